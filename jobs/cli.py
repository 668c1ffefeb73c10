"""The `batch-embed` command: one subcommand per job."""

from __future__ import annotations

import argparse
import sys

from jobs import demo_corpus, embed, mine, rerank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-embed", description="Distributed batch embedding on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="embed Parquet shards into a LanceDB table", description=embed.__doc__)
    embed.add_arguments(p)
    p.set_defaults(func=embed.run_from_args)
    p = sub.add_parser("rerank", help="rerank (query, document) pairs into a LanceDB table",
                       description=rerank.__doc__)
    embed.add_arguments(p)
    p.set_defaults(func=rerank.run_from_args)
    p = sub.add_parser("mine", help="mine hard negatives for (query, positive) pairs into JSONL",
                       description=mine.__doc__)
    embed.add_arguments(p)
    p.set_defaults(func=mine.run_from_args)
    p = sub.add_parser("demo-corpus", help="write the offline demo corpus", description=demo_corpus.__doc__)
    demo_corpus.add_arguments(p)
    p.set_defaults(func=demo_corpus.run_from_args)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
