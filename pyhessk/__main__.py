"""Command line: ``python -m pyhessk [demo|config|bench|warmup] [options]`` (also installed as the ``pyhessk``
command)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pyhessk", description="Exact second-order information of MLPs.")
    parser.add_argument("command", nargs="?", default="demo", choices=["demo", "config", "bench", "warmup"],
                        help="demo: train on the digits data with three optimizers and analyse the curvature "
                             "(default); config: which engines can run; bench: cached products against their "
                             "GEMM ideal over width, batch size and block size (short; --full for the long run); "
                             "warmup: compile the Numba engine's kernels into its disk cache now")
    demo = parser.add_argument_group("demo options")
    demo.add_argument("--out", default="pyhessk-demo-report", metavar="DIR",
                      help="folder for the report: summary.md and PNG plots (default: %(default)s); with "
                           "bench: where to write the sweep's Markdown, JSON and PNG (default: print only)")
    demo.add_argument("--no-report", action="store_true", help="print the summary only")
    demo.add_argument("--budget", type=float, default=8.0, metavar="SECONDS",
                      help="optimizer wall time per method (default: %(default)s)")
    demo.add_argument("--hidden", type=int, default=32, help="hidden units (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the split, start and estimators (default: 0)")
    demo.add_argument("--backend", default="auto", help="pyhessk engine (default: auto)")
    demo.add_argument("--threads", type=int, default=1,
                      help="BLAS threads; 0 keeps the library default (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    bench = parser.add_argument_group("bench options")
    bench.add_argument("--full", action="store_true", help="the long sweep (as committed in bench/results)")
    bench.add_argument("--engines", default="", help="comma list of engines (default: every one that can run)")
    bench.add_argument("--machine", default="local", help="machine label of the written files (default: local)")
    bench.add_argument("--quiet", action="store_true", help="no progress lines")
    warm = parser.add_argument_group("warmup options")
    warm.add_argument("--dtypes", default="float32,float64", help="comma list (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from ._bench.sweeps import main as bench_main

        args.out = args.out if args.out != parser.get_default("out") else None
        bench_main(args)
    elif args.command == "warmup":
        from .warmup import warmup

        try:
            warmup([d for d in args.dtypes.split(",") if d], verbose=True)
        except (TypeError, RuntimeError) as exc:
            parser.error(str(exc))
    elif args.command == "config":
        from . import show_config

        show_config()
    else:
        from .demo import main as demo_main

        demo_main({"report": None if args.no_report else args.out, "budget": args.budget, "hidden": args.hidden,
                   "seed": args.seed, "backend": args.backend, "threads": args.threads or None,
                   "progress": not args.no_progress})


if __name__ == "__main__":
    main()
