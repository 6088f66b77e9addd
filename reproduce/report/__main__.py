"""`python -m reproduce.report`: see reproduce/report/cli.py."""
import sys

from reproduce.report.cli import main

sys.exit(main())
