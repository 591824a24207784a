"""Red team 4: --engine-cache entries are written atomically.

The cache chain ended in Polygraphy's SaveEngine, which opens the cache file and writes the engine
in place: a build stopped or failing mid-write (SIGTERM, a full disk, a file size limit) left a
truncated `<key>.engine`, and the next run took any existing file as a cache hit and loaded it.
Simulated here with a file size limit (RLIMIT_FSIZE) smaller than the engine."""

import os
import resource
import signal

import onnx
import pytest
from polygraphy.backend.trt import SaveEngine

from onnx2trt_check.errors import OutputPathError
from onnx2trt_check.targets.trt import EngineCache, TrtBuildOptions, build_loader_chain


class _Engine:
    def serialize(self) -> bytes:
        return b"e" * (1 << 20)


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # the chain is made without TensorRT
    model = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model("<ir_version: 8, opset_import: [\"\" : 17]> g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }"), model)
    chain = build_loader_chain(str(model), TrtBuildOptions(precision="fp16"), engine_cache=EngineCache(str(tmp_path / "engines"), "10.9.0", "gpu"))
    assert isinstance(chain, SaveEngine)  # still Polygraphy's loader for everything that reads the chain
    chain._engine = _Engine  # the built engine, without TensorRT
    return chain


def test_a_cache_entry_is_whole_or_absent(chain):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, hard))
    try:
        with pytest.raises((OutputPathError, OSError)):
            chain()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert not os.path.exists(chain.path), "a truncated engine was left in the cache"
    assert os.listdir(os.path.dirname(chain.path)) == []


def test_a_cache_entry_is_written(chain):
    assert isinstance(chain(), _Engine)
    with open(chain.path, "rb") as stream:
        assert stream.read() == _Engine().serialize()
