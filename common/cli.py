"""The one command-line convention of every program in this repository.

Used by data_prep.*, reproduce.* and bench.* (common is the bottom floor, so everything may import
it; it imports nothing of theirs):

- the program is always named `python -m PACKAGE.MODULE` (`make_parser`);
- every option has a help line, and the help shows its default (`DefaultsFormatter`);
- usage errors (unknown option, bad value) exit 2 with argparse's own message;
- input and runtime errors exit 1 with exactly one line on stderr, `error: <what>`, naming the file
  (`run`); Ctrl-C exits 130 with one line too;
- an option that takes several values says so (`KEY=RUN [KEY=RUN ...]`) and accepts both
  `--opt a b` and `--opt a --opt b` (`action="extend", nargs="+"`);
- long steps show a progress bar on a terminal, and print nothing extra into a pipe (`progress`);
- one name per meaning across programs (tests/repo/test_cli.py holds it): `--data SHARDS` is a TFRecord
  folder, `--split` a subset (train/val/test) and `--split-method` how patients are split,
  `--run` one run folder and `--runs` several, `--runs-dir` a folder of run folders, `--seed`
  what a program draws with and `--bootstrap-seed` the bootstrap's, `--synthetic` "the phantom";
  a renamed option keeps its old spelling for one release, with a deprecation line (`rename`).
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


class _OldSpelling(argparse.Action):
    """An old option name: says once on stderr which name replaces it, then acts as that one."""

    def __init__(self, option_strings, dest, target=None, new=None, **kwargs):
        self.target, self.new = target, new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated and goes in the next release; use "
              f"{self.new}", file=sys.stderr)
        self.target(parser, namespace, values, self.new)


def rename(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Keep `old` working as `new` (already added to `parser`) for one release, with one
    deprecation line. `new` may be `--no-X` of a BooleanOptionalAction."""
    target = next(a for a in parser._actions if new in a.option_strings)
    if target.required:  # either spelling satisfies it: checked after parsing (Parser)
        target.required = False
        parser.required_after_parse.append(target)
    nargs = 0 if target.nargs == 0 or isinstance(target, argparse.BooleanOptionalAction) else target.nargs
    parser.add_argument(old, action=_OldSpelling, target=target, new=new, dest=target.dest,
                        nargs=nargs, type=None if nargs == 0 else target.type,
                        choices=None if nargs == 0 else target.choices, metavar=target.metavar,
                        default=argparse.SUPPRESS, help=f"old spelling of {new} (deprecated)")


class _Version(argparse.Action):
    """--version: the package version and the commit of the code (found only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from common.provenance import code_version, package_version

        code = code_version()
        where = (f"git {code['git_commit'][:12]}{' with local edits' if code['git_dirty'] else ''}"
                 if "git_commit" in code else "installed package")
        print(f"{parser.prog} {package_version()} ({where})")
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse's parser, plus required options that an old spelling may also give (`rename`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.required_after_parse: list[argparse.Action] = []

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        missing = [a.option_strings[0] for a in self.required_after_parse
                   if getattr(namespace, a.dest, None) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return namespace, extras


def make_parser(module: str, doc: str | None) -> Parser:
    """A parser named `python -m MODULE`, described by the module docstring (`doc`)."""
    parser = Parser(prog=f"python -m {module}", description=doc, formatter_class=DefaultsFormatter)
    parser.add_argument("--version", action=_Version, help="print the package version and code commit")
    return parser


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
