"""pyhessk's benchmark suite (pytest-benchmark); see bench/README.md. Not part of the installed package."""
