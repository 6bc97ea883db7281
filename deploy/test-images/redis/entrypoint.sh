#!/bin/sh
# TEST FIXTURE: like the official image, `redis-server` accepts connections from other
# containers (protected mode off unless the arguments set it).
set -eu
if [ "${1:-}" = "redis-server" ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *) shift; set -- redis-server --protected-mode no "$@" ;;
  esac
fi
exec "$@"
