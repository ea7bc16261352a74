"""The command-line conventions of the project's scripts (checkpoint_tools, glue_squad).

Import this module first in a script, before anything imports TensorFlow: unless --verbose is on
the command line, TensorFlow's start-up lines (oneDNN, CPU
features, CUDA driver probes) are kept off stderr. Then run the script with cli.run(main):
  - a failure the user can fix is one line on stderr, "<script>: error: <what>", naming the flag,
    file, line or variable: exit code 2 for usage (a flag missing, wrong or contradicting another; a
    path that cannot be used), 1 for a data problem (a file that is truncated or malformed, a
    checkpoint that does not fit its config);
  - --help (-h) lists the script's own flags (and those it adopts) and exits 0.
Raise app.UsageError for usage, DataError (or ValueError, OSError, TensorFlow errors) for data.
A traceback means a bug in the script, never bad input.
"""
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
VERBOSE = "--verbose" in sys.argv[1:]


class DataError(ValueError):
    """Bad data (exit 1), as opposed to a bad command line (app.UsageError, exit 2)."""


def _import_tensorflow_quietly():
    if VERBOSE or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Some start-up lines are written before TensorFlow reads its log level: hide fd 2 meanwhile.
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")


_import_tensorflow_quietly()
from fastbert_tf.weights import first_line  # noqa: E402  (after the quiet TensorFlow import)


def define_verbose():
    """--verbose, listed by --help as a flag of the calling script."""
    caller = sys._getframe(1).f_globals.get("__name__")
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up and info logs.", module_name=caller)


def fail(message, code):
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fastbert"
    if prog in ("__main__.py", "-c", "-m"):
        prog = "fastbert"
    message = " ".join(str(message).split())  # one line
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def run(main):
    """app.run(main) with the conventions above."""
    import tensorflow as tf

    def parse(argv):
        if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
            app.usage(shorthelp=True, writeto_stdout=True)
            sys.exit(0)
        try:
            return FLAGS(argv)
        except flags.Error as e:
            fail(e, 2)

    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {' '.join(argv[1:])!r} (flags are --name=value)", 2)
        try:
            return main(argv)
        except app.UsageError as e:
            fail(e, 2)
        except ValueError as e:
            fail(e, 1)
        except OSError as e:
            fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else e, 1)
        except tf.errors.OpError as e:
            fail(first_line(e), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    app.run(wrapped, flags_parser=parse)
