"""``python -m crypto_assets.simulator --port 0 --coins 300``: serve until killed.

Prints one line ``COINGECKO_BASE_URL=http://127.0.0.1:PORT/api/v3`` once listening, so a
caller can start it with port 0 and read the URL from stdout.
"""

from __future__ import annotations

import argparse

from crypto_assets.simulator.server import Simulator, parse_now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crypto_assets.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--coins", type=int, default=300, help="size of the coin universe")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-key", default=None, help="require this key in the plan's header")
    parser.add_argument("--plan", choices=("demo", "pro"), default="demo")
    parser.add_argument("--now", type=parse_now, default=None, help="freeze the clock (ISO-8601, UTC)")
    parser.add_argument("--markets-file", default=None, help="serve this recorded /coins/markets body as page 1")
    args = parser.parse_args(argv)
    sim = Simulator(
        coins=args.coins, api_key=args.api_key, plan=args.plan, seed=args.seed, now=args.now,
        markets_file=args.markets_file, host=args.host, port=args.port,
    )  # fmt: skip
    try:
        sim.serve_forever(on_ready=lambda url: print(f"COINGECKO_BASE_URL={url}", flush=True))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
