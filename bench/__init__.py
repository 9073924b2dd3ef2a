"""signoff's benchmark suite: every figure beside a floor measured in the same run (see bench/README.md)."""
