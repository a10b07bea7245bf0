#!/usr/bin/python3
"""Startup time: spawn a server and poll it until the first 200, then stop it.

Usage: first200.py PORT PATH -- COMMAND...
Prints "<ms to first 200> <VmRSS kB at that moment>". The clock starts just before fork/exec,
so the time includes exec, dynamic linking, backend open and the listener coming up.
Polls with a fresh connection every 0.2 ms; gives up after 10 s.
"""
import os
import signal
import socket
import subprocess
import sys
import time


def status(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64).decode("latin-1")
    return int(head.split(" ", 2)[1]) if head.startswith("HTTP/") else 0


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    port, path, sep, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    assert sep == "--" and cmd, __doc__
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 10:
            try:
                if status(port, path) == 200:
                    elapsed_ms = (time.perf_counter() - start) * 1e3
                    print(f"{elapsed_ms:.1f} {rss_kb(proc.pid)}")
                    return 0
            except (OSError, ValueError, IndexError):
                pass
            if proc.poll() is not None:
                print(f"first200: server exited with {proc.returncode}", file=sys.stderr)
                return 1
            time.sleep(0.0002)
        print("first200: no 200 within 10 s", file=sys.stderr)
        return 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
