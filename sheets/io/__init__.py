"""Where rows come from and go to: file sources, the import into stored rows, Google Sheets, exports."""
