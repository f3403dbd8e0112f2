"""The ``busprop`` console script."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="busprop", description="Sentry traces across message buses.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run one trace across every bus and print it as a waterfall")
    demo.add_argument("--spotlight", action="store_true", help="also send it to a local Spotlight")
    inspect = commands.add_parser(
        "inspect",
        help="say whether this process would continue a message's trace, and why",
        description="Run busprop's consumer path on one message's trace headers with this process's "
        "sentry-sdk and busprop configuration (nothing is sent) and report the trace, the decision "
        "and the headers forwarded downstream. Exit status: 0 when the trace is continued (and "
        "forwarded to --destination), 1 when a fresh trace starts here or at the next hop, 2 on "
        "usage errors.",
    )
    inspect.add_argument("--sentry-trace", help="the message's sentry-trace header")
    inspect.add_argument("--baggage", help="the message's baggage header")
    inspect.add_argument("--traceparent", help="the message's W3C traceparent header")
    inspect.add_argument(
        "--destination", help="where the processing publishes next (checks propagation_targets)"
    )
    inspect.add_argument("--system", default="inspect", help="messaging.system given to traces_sampler")
    inspect.add_argument(
        "--config",
        metavar="MODULE",
        help="module to import first, as the app does (sentry_sdk.init, busprop.configure)",
    )
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    arguments = parser.parse_args(argv)
    if arguments.command == "inspect":
        if not (arguments.sentry_trace or arguments.baggage or arguments.traceparent):
            parser.error(
                "inspect needs the message's headers: --sentry-trace, --baggage and/or --traceparent"
            )
        return _inspect(arguments)
    if arguments.command == "demo":
        from busprop.demo.run import run_demo

        run_demo(spotlight=arguments.spotlight)
    return 0


def _inspect(arguments: argparse.Namespace) -> int:
    import json
    import os

    from busprop import diagnose

    try:
        initialised_by = diagnose.load_configuration(arguments.config, os.environ)
    except diagnose.UsageError as error:
        print(f"busprop inspect: error: {error}", file=sys.stderr)
        return 2
    headers = {
        name: value
        for name, value in (
            ("sentry-trace", arguments.sentry_trace),
            ("baggage", arguments.baggage),
            ("traceparent", arguments.traceparent),
        )
        if value
    }
    found = diagnose.diagnose(
        headers, destination=arguments.destination, system=arguments.system, initialised_by=initialised_by
    )
    print(json.dumps(diagnose.as_json(found), indent=2) if arguments.json else diagnose.render(found))
    return found.exit_status


if __name__ == "__main__":
    sys.exit(main())
