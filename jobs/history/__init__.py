"""The jobs' history: finished jobs rolled up per kind by minute, hour and day
(`rollup`, run by the upkeep), read back as per-kind performance and long-range series
(`stats`) for the metrics page and Prometheus."""
