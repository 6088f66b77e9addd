"""`python -m data_prep.phantom`: see data_prep/phantom/make.py."""
import sys

from data_prep.phantom.make import main

sys.exit(main())
