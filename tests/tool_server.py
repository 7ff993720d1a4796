# Copyright (c) mdeq_mm authors. All rights reserved.
"""Run tool processes without paying for the imports each time.

Most of a small tool run in the tests is interpreter start-up: importing
torch, mmengine, mmseg, mmpretrain and mdeq_mm. :class:`ToolServer` starts
one interpreter that imports them once and then forks a child per tool
run. Each run is still its own process: a fresh copy of an interpreter in
which no Runner, scope, logger or message hub exists yet, with its own
working directory, environment, arguments, stdout/stderr (to a file) and
exit code, running the tool script as ``__main__`` exactly as
``python tools/<name>.py ...`` would. The server itself never computes
(no thread pools are started before a fork).

Tests whose subject is the process itself (signals, ``torchrun``, an
installed wheel, a broken environment) start real interpreters instead.

Protocol (line-delimited JSON over the server's stdin / stdout):
request ``{"argv": [...], "cwd": ..., "env": {...}, "out": path,
"timeout": s}``, answer ``{"rc": int}`` on a line starting with ``@@``.
"""
import json
import os
import subprocess
import sys
import threading

MARK = '@@'
PRELOAD = ('torch', 'mmengine.runner', 'mmseg.models', 'mmseg.datasets',
           'mmseg.evaluation', 'mmpretrain.models', 'mmpretrain.datasets',
           'mmpretrain.evaluation', 'mdeq_mm', 'cv2')


class ToolServer:
    """Client side: ``run(argv, cwd, env, out, timeout) -> exit code``.

    Args:
        env (dict): the server's environment (children start from it and
            get the request's environment on top).
    """

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, '-u', __file__], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
        self.lock = threading.Lock()

    def run(self, argv, cwd, env, out, timeout):
        """Run ``argv`` (a script path and its arguments) in a fork;
        return its exit code, with stdout and stderr written to ``out``."""
        with self.lock:
            if self.proc.poll() is not None:
                raise RuntimeError('the tool server has exited '
                                   f'(rc {self.proc.returncode})')
            self.proc.stdin.write(json.dumps(dict(
                argv=list(argv), cwd=cwd, env=dict(env), out=out,
                timeout=timeout)) + '\n')
            self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError('the tool server died during '
                                       f'{argv}')
                if line.startswith(MARK):
                    return json.loads(line[len(MARK):])['rc']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def _child(req) -> int:
    """In the forked child: become ``python argv...`` and run it."""
    import atexit
    import runpy
    os.chdir(req['cwd'])
    os.environ.clear()
    os.environ.update(req['env'])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    fd = os.open(req['out'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import faulthandler
    faulthandler.enable(all_threads=True)  # a hung run's stacks, on SIGABRT
    script = os.path.abspath(req['argv'][0])
    sys.argv = [script, *req['argv'][1:]]
    sys.path[0] = os.path.dirname(script)  # as `python script` sets it
    rc = 0
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code
        else:
            print(e.code, file=sys.stderr)
            rc = 1
    except BaseException:  # as the interpreter reports an uncaught one
        import traceback
        traceback.print_exc()
        rc = 1
    try:
        threading._shutdown()  # join non-daemon threads, as exit does
    except Exception:
        pass
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def _wait(pid, timeout) -> int:
    """Exit code of child ``pid``. Past ``timeout`` it gets SIGABRT (its
    faulthandler writes every thread's stack into its output), then
    SIGKILL 10 s later; the exit code is then -9."""
    import signal
    import time
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, signal.SIGABRT)
            for _ in range(200):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return -9
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.05)


def serve():
    import importlib
    import warnings
    # numpy, OpenCV and SciPy each bundle an OpenBLAS that starts a thread
    # pool at import; a fork of a process with idle pool threads can
    # deadlock in the child. Torch computes with its own thread pool.
    os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name in PRELOAD:
            importlib.import_module(name)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(req)
            finally:
                os._exit(code)
        rc = _wait(pid, req['timeout'])
        sys.stdout.write(MARK + json.dumps(dict(rc=rc)) + '\n')
        sys.stdout.flush()


if __name__ == '__main__':
    serve()
