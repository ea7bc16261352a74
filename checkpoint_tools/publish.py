"""Writing a tool's output so that no run, however it ends, loses data.

A tool's output is one directory (convert_hf's --output_dir; for the checkpoint tools, the directory
of the output prefix). The rules, in the order they are checked:
  - Paths are compared as real paths (symlinks resolved), files also by (device, inode), so a hard
    link or a symlink to an input is the input. The output may not be an input, contain one, or lie
    inside an input directory.
  - An existing output directory is replaced only with overwrite=True and only when it holds the
    marker file (MARKER) that the same tool wrote there: never an arbitrary directory.
  - Everything is written into one fresh temporary directory beside the destination (same file
    system), fsync'ed, and published with one rename: renameat2(RENAME_NOREPLACE) for a new output,
    renameat2(RENAME_EXCHANGE) over an old one, whose files are then deleted. A kill at any moment
    leaves the destination either as it was or complete.
  - Each temporary directory has a lock file held (flock) while its process lives; every run first
    deletes the temporaries beside its destination whose lock nobody holds (left by killed runs).

FASTBERT_TOOLS_KILL_AT=written|exchanged (tests only) kills the process with SIGKILL just before the
publishing rename or just after it, to check the above.
"""
import ctypes
import datetime
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal

MARKER = "fastbert_output.json"
_TMP, _OLD = ".fastbert-tmp-", ".fastbert-old-"
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _kill_point(step):
    if os.environ.get("FASTBERT_TOOLS_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _renameat2(src, dst, flag):
    """True when done; False where the kernel or libc lacks renameat2 (the caller falls back)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flag) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # no renameat2, or the file system lacks the flag
        return False
    raise OSError(err, os.strerror(err), dst)


def _identity(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _inside(path, parent):
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def _files_below(path):
    if os.path.isfile(path):
        yield path
        return
    for root, _, files in os.walk(path):
        for f in files:
            yield os.path.join(root, f)


class Output:
    """The output directory of one tool run. Use as a context manager:

        with Output("convert_hf", out_dir, inputs=[hf_dir], overwrite=flag, flag="--output_dir") as out:
            ... write files into out.tmp ...
            out.publish()

    Leaving the block without publish() (an exception) deletes the temporary directory.
    Constructing it checks everything above and raises ValueError naming the flag and path."""

    def __init__(self, tool, destination, inputs, overwrite=False, flag="output"):
        if not destination:
            raise ValueError(f"{flag} is required")
        self.tool, self.flag = tool, flag
        self.dest = os.path.realpath(destination)
        self.parent, self.base = os.path.split(self.dest)
        inputs = [p for p in inputs if p]
        self._check(destination, inputs, overwrite)
        self.replaces = os.path.exists(self.dest)
        self.tmp = self._lock = None
        self.published = False

    # ---------------------------------------------------------------- checks

    def _check(self, given, inputs, overwrite):
        flag, dest = self.flag, self.dest
        real_inputs = [os.path.realpath(p) for p in inputs]
        for given_in, real in zip(inputs, real_inputs):
            if real == dest:
                raise ValueError(f"{flag} {given} is the input {given_in}")
            if _inside(real, dest):
                raise ValueError(f"{flag} {given} contains the input {given_in}")
            if os.path.isdir(real) and _inside(dest, real):
                raise ValueError(f"{flag} {given} is inside the input directory {given_in}")
        if not os.path.lexists(dest):
            if os.path.lexists(given) and not os.path.exists(given):
                raise ValueError(f"{flag} {given} is a broken symbolic link")
            return
        if not os.path.isdir(dest):
            raise ValueError(f"{flag} {given} exists and is not a directory")
        marker = os.path.join(dest, MARKER)
        owner = None
        if os.path.isfile(marker):
            try:
                with open(marker) as f:
                    owner = json.load(f).get("tool")
            except (OSError, ValueError, AttributeError):
                owner = None
        if owner != self.tool:
            what = f"written by {owner}" if owner else "not an output of this tool"
            raise ValueError(f"{flag} {given} exists and is {what} (no {MARKER} of {self.tool}): give a new "
                             "directory; --overwrite replaces only this tool's own earlier output")
        if not overwrite:
            raise ValueError(f"{flag} {given} exists (pass --overwrite to replace it)")
        input_ids = {}
        for given_in, real in zip(inputs, real_inputs):
            for f in _files_below(real) if os.path.exists(real) else ():
                try:
                    input_ids[_identity(f)] = given_in
                except OSError:
                    pass
        for f in _files_below(dest):
            try:
                ident = _identity(f)
            except OSError:
                continue
            if ident in input_ids:
                raise ValueError(f"{flag} {given}: {f} is the same file as the input {input_ids[ident]} "
                                 "(a hard link); replacing the output would not change it, but refusing is safer")

    # ---------------------------------------------------------------- temporaries

    def _clean_stale(self):
        """Deletes temporaries of earlier runs for this destination whose lock nobody holds."""
        try:
            names = os.listdir(self.parent)
        except OSError:
            return
        stem = "." + self.base
        for name in names:
            if not name.startswith(stem) or not name.endswith(".lock"):
                continue
            tag = name[len(stem):-len(".lock")]
            if not (tag.startswith(_TMP) or tag.startswith(_OLD)):
                continue
            lock_path = os.path.join(self.parent, name)
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live run holds it
                continue
            try:
                leftover = lock_path[:-len(".lock")]
                if tag.startswith(_OLD) and os.path.isdir(leftover) and not os.path.lexists(self.dest):
                    os.rename(leftover, self.dest)  # killed between the two renames of the fallback: put it back
                shutil.rmtree(leftover, ignore_errors=True)
                os.unlink(lock_path)
            finally:
                os.close(fd)

    def _new_temporary(self, kind):
        name = f".{self.base}{kind}{secrets.token_hex(6)}"
        lock_path = os.path.join(self.parent, name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return os.path.join(self.parent, name), fd, lock_path

    def __enter__(self):
        os.makedirs(self.parent, exist_ok=True)
        self._clean_stale()
        self.tmp, fd, lock_path = self._new_temporary(_TMP)
        self._lock = (fd, lock_path)
        os.mkdir(self.tmp, 0o755)
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.published and self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self._lock:
            fd, lock_path = self._lock
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            os.close(fd)
            self._lock = None
        return False

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    # ---------------------------------------------------------------- publishing

    def _sync_tree(self):
        for root, dirs, files in os.walk(self.tmp):
            for f in files:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(root)

    def publish(self, inputs=()):
        """Writes the marker, syncs, and renames the temporary directory into place."""
        marker = {"tool": self.tool, "written": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "inputs": [os.path.realpath(p) for p in inputs if p],
                  "files": sorted(os.listdir(self.tmp))}
        with open(self.path(MARKER), "w") as f:
            json.dump(marker, f, indent=2)
        self._sync_tree()
        _kill_point("written")
        if not self.replaces:
            if not _renameat2(self.tmp, self.dest, _RENAME_NOREPLACE):
                if os.path.lexists(self.dest):
                    raise ValueError(f"{self.flag} {self.dest} appeared while this run wrote it")
                os.rename(self.tmp, self.dest)
            self.published = True
        elif _renameat2(self.tmp, self.dest, _RENAME_EXCHANGE):
            self.published = True  # the old output is now at self.tmp, still under our lock
            _kill_point("exchanged")
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:  # no atomic exchange: move the old output aside (under its own lock), then the new in
            old, fd, lock_path = self._new_temporary(_OLD)
            try:
                os.rename(self.dest, old)
                os.rename(self.tmp, self.dest)
                self.published = True
                _kill_point("exchanged")
                shutil.rmtree(old, ignore_errors=True)
            finally:
                os.unlink(lock_path)
                os.close(fd)
        _fsync_dir(self.parent)
        return self.dest


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
