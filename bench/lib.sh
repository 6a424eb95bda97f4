# Sourced by the bench/*.sh scripts: wrk (installed with apt-get when possible) and free ports.

# Exits 0 with a printed reason when wrk is missing and cannot be installed.
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y wrk >/dev/null
  else
    echo "SKIPPED: wrk is not installed and cannot be installed here (apt-get install wrk)" >&2
    exit 0
  fi
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
