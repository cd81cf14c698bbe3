"""``python -m crypto_assets.dashboard [--port 8501] [--address 127.0.0.1]``: Streamlit serving
the page, headless, on this machine only unless told otherwise, without usage statistics and
without watching files (a shipped page, not one being edited)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def command(port: int = 8501, address: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--global.showWarningOnDirectExecution", "false",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crypto_assets.dashboard", description=__doc__)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    args = parser.parse_args(argv)
    print(f"Dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, command(args.port, args.address))  # the server takes this process's pid


if __name__ == "__main__":
    main()
