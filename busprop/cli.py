"""The ``busprop`` console script."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="busprop", description="Sentry traces across message buses.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run one trace across every bus and print it as a waterfall")
    demo.add_argument("--spotlight", action="store_true", help="also send it to a local Spotlight")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from busprop.demo.run import run_demo

        run_demo(spotlight=arguments.spotlight)
    return 0


if __name__ == "__main__":
    sys.exit(main())
