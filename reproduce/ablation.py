"""`python -m reproduce.ablation`, the entry point `make ablation` and the docs use; the ablation
itself is reproduce/study/ablation.py."""
import sys

from reproduce.study.ablation import main

if __name__ == "__main__":
    sys.exit(main())
