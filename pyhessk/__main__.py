"""Command line: ``python -m pyhessk [demo|config]`` (also installed as the ``pyhessk`` command)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pyhessk", description="Exact second-order information of MLPs.")
    parser.add_argument("command", nargs="?", default="demo", choices=["demo", "config"],
                        help="demo: a short check on the digits data (default); config: which engines can run")
    args = parser.parse_args(argv)
    if args.command == "config":
        from . import show_config

        show_config()
    else:
        from .demo import main as demo

        demo()


if __name__ == "__main__":
    main()
