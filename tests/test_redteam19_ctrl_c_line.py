"""Red team 19: Ctrl-C during a command (quantize, optimize, bisect) printed
"onnx2trt-check: interrupted (); nothing more was written": an exception is always true, so
`exc or 'Ctrl-C'` gave KeyboardInterrupt's empty text. SIGTERM's line named its signal."""

import argparse
import signal

from onnx2trt_check.cli import main as cli
from onnx2trt_check.leftovers import Terminated


def _parser_raising(exc):
    def handler(args, extra):
        raise exc

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler)
    return lambda: parser


def test_ctrl_c_names_itself(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(KeyboardInterrupt()))
    assert cli.main([]) == 128 + signal.SIGINT
    assert capsys.readouterr().err == "onnx2trt-check: interrupted (Ctrl-C); nothing more was written\n"


def test_sigterm_still_names_its_signal(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(Terminated("stopped by signal 15 (SIGTERM)")))
    assert cli.main([]) == 128 + signal.SIGTERM
    assert "interrupted (stopped by signal 15 (SIGTERM)); nothing more was written" in capsys.readouterr().err
