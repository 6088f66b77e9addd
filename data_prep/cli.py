"""The one command-line convention of every program in this repository.

Used by data_prep.*, reproduce.* and bench.* (data_prep is the upstream package, so everything may
import it; it imports nothing of theirs):

- the program is always named `python -m PACKAGE.MODULE` (`make_parser`);
- every option has a help line, and the help shows its default (`DefaultsFormatter`);
- usage errors (unknown option, bad value) exit 2 with argparse's own message;
- input and runtime errors exit 1 with exactly one line on stderr, `error: <what>`, naming the file
  (`run`); Ctrl-C exits 130 with one line too;
- an option that takes several values says so (`KEY=RUN [KEY=RUN ...]`) and accepts both
  `--opt a b` and `--opt a --opt b` (`action="extend", nargs="+"`);
- long steps show a progress bar on a terminal, and print nothing extra into a pipe (`progress`).
"""
from __future__ import annotations

import argparse
import sys


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends "(default: X)" to every option that has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.option_strings and "%(default)" not in text and default is not None
                and default is not argparse.SUPPRESS and default is not False and default != []):
            text += " (default: %(default)s)"
        return text


def make_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser named `python -m MODULE`, described by the module docstring (`doc`)."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=DefaultsFormatter)


def progress(iterable=None, *, total=None, desc: str, unit: str):
    """A progress bar on stderr when stderr is a terminal; nothing when it is a pipe or a file, so
    a log (or a test) holds only the program's own lines and one `error:` line at most."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=None,
                mininterval=1, dynamic_ncols=True)


def one_line(err: BaseException) -> str:
    """An exception's message on one line (Keras and TensorFlow messages often span several)."""
    return " ".join(str(err).split()) or type(err).__name__


# Errors that mean "bad input or a failed step", reported as one line. Every error class of this
# package derives from one of these (ValueError: LabelFileError, SplitError, ImageError, ShardError,
# ManifestError, ReportError, ...; RuntimeError: TrainingFailed).
INPUT_ERRORS = (ValueError, OSError, RuntimeError)


def run(body, errors: tuple = INPUT_ERRORS) -> int:
    """Call `body()`; its return value (None = 0) is the exit status. An error of `errors` is one
    `error: …` line on stderr and exit status 1; Ctrl-C is one line and 130."""
    try:
        status = body()
    except errors as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
