"""The fixture set of bad and out-of-scope inputs: models, data files, data loaders, written into one
folder. tests/test_bad_input.py runs every face over them."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import onnx
from onnx import TensorProto, helper
from tiny_models import classifier, parse, save

OPSET = [helper.make_opsetid("", 17)]


def build(folder: Path) -> Path:
    """Write every fixture into `folder` and return it."""
    _models(folder)
    _external_data(folder)
    _data(folder)
    _loaders(folder)
    return folder


# ---------------------------------------------------------------------------------- models


def _model(inputs, outputs, nodes, *, domains=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=OPSET + [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = 8
    return model


def _tensor(name: str, elem=TensorProto.FLOAT, shape=(1, 4)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def _models(folder: Path) -> None:
    save(classifier(), folder / "good.onnx")
    dynamic = classifier(batch="N")
    for index, name in ((2, "H"), (3, "W")):
        dynamic.graph.input[0].type.tensor_type.shape.dim[index].dim_param = name
    save(dynamic, folder / "dynamic_hw.onnx")
    float_map = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    zipmap = _model([_tensor("x")], [helper.make_value_info("probabilities", helper.make_sequence_type_proto(float_map))],
                    [helper.make_node("ZipMap", ["x"], ["probabilities"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2, 3])],
                    domains=["ai.onnx.ml"])
    save(zipmap, folder / "sklearn_zipmap.onnx")
    # ONNX Runtime seeds each session alike: its own runs agreed, and the fp16 artifact "failed" at 14 dB
    save(_model([_tensor("x")], [_tensor("y")], [helper.make_node("RandomNormalLike", ["x"], ["n"], scale=0.1),
                                                 helper.make_node("Add", ["x", "n"], ["y"])]), folder / "random_noise.onnx")
    # torch's dynamo exporter writes one per dropout layer of a model left in train mode
    save(parse('<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,4] y) '
               '{ r = Constant<value = float {0.1}>() \n t = Constant<value = bool {1}>() \n y, m = Dropout(x, r, t) }'),
         folder / "train_dropout.onnx")
    save(_model([_tensor("x")], [_tensor("y")], [helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2")],
                domains=["ai.onnx.ml"]), folder / "ml_only.onnx")
    save(parse('<ir_version: 8, opset_import: ["" : 17]> g (seq(float[2]) s) => (float[2] y) '
               '{ i = Constant<value = int64 {0}>() \n y = SequenceAt(s, i) }'), folder / "sequence_input.onnx")
    save(parse('<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (seq(float[2]) s) { s = SequenceConstruct(x, x) }'),
         folder / "sequence_output.onnx")
    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 4]))
    save(_model([_tensor("x")], [helper.make_value_info("y", optional)], [helper.make_node("Optional", ["x"], ["y"])]),
         folder / "optional_output.onnx")
    save(parse('<ir_version: 8, opset_import: ["" : 17]> g (string[2] s) => (string[2] y) { y = Identity(s) }'), folder / "string_io.onnx")
    save(_model([_tensor("x", TensorProto.BFLOAT16)], [_tensor("y", TensorProto.BFLOAT16)], [helper.make_node("Relu", ["x"], ["y"])]),
         folder / "bfloat16_io.onnx")
    newer = classifier()
    newer.ir_version = 99
    save(newer, folder / "ir99.onnx")
    untyped = _model([helper.make_value_info("x", onnx.TypeProto())], [_tensor("y")], [helper.make_node("Relu", ["x"], ["y"])])
    save(untyped, folder / "untyped_input.onnx")
    save(qdq_relu(), folder / "qdq.onnx")
    (folder / "not_onnx.onnx").write_text("hello")
    (folder / "truncated.onnx").write_bytes(classifier().SerializeToString()[:300])
    (folder / "empty_file.onnx").write_bytes(b"")
    (folder / "folder.onnx").mkdir()


def qdq_relu(opset: int = 17) -> onnx.ModelProto:
    """x[1,3,8,8] -> QuantizeLinear -> DequantizeLinear -> Relu: the smallest model with Q/DQ nodes."""
    return parse(f"""<ir_version: 8, opset_import: ["" : {opset}]>
        g (float[1, 3, 8, 8] x) => (float[1, 3, 8, 8] y) {{
            s = Constant<value = float {{0.01}}>()
            z = Constant<value = int8 {{0}}>()
            q = QuantizeLinear(x, s, z)
            d = DequantizeLinear(q, s, z)
            y = Relu(d)
        }}""")


def _external_data(folder: Path) -> None:
    """One subfolder per broken external-data layout, each with its model.onnx."""
    weights = folder / "weights.data"  # an absolute location points here
    for name, location in (("ext_missing", "w.data"), ("ext_absolute", str(weights)), ("ext_outside", "../weights.data"),
                           ("ext_symlink", "link.data"), ("ext_short", "w.data")):
        sub = folder / name
        sub.mkdir()
        onnx.save(classifier(), str(sub / "model.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
        data = (sub / "w.data").read_bytes()
        weights.write_bytes(data)
        model = onnx.load(str(sub / "model.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(sub / "model.onnx"))
        if name != "ext_short":
            (sub / "w.data").unlink()
        else:
            (sub / "w.data").write_bytes(data[: len(data) // 2])
    os.symlink(weights, folder / "ext_symlink" / "link.data")


# ---------------------------------------------------------------------------------- data


def _data(folder: Path) -> None:
    image = np.zeros((1, 3, 8, 8), np.float32)
    np.savez(folder / "ok.npz", x=image)
    np.savez(folder / "empty_batch.npz", x=np.zeros((0, 3, 8, 8), np.float32))
    np.savez(folder / "empty_stack.npz", x=np.zeros((0, 1, 3, 8, 8), np.float32))
    np.savez(folder / "no_arrays.npz")
    np.savez(folder / "wrong_name.npz", y=image)
    np.savez(folder / "wrong_shape.npz", x=np.zeros((1, 3, 4, 4), np.float32))
    np.savez(folder / "complex.npz", x=image.astype(np.complex64))
    np.savez(folder / "objects.npz", x=np.array([object()], dtype=object))
    np.save(folder / "single.npy", image)
    (folder / "single.npy").rename(folder / "single_npy.npz")
    (folder / "junk.npz").write_text("junk")
    _socket(folder / "socket.out")
    (folder / "npz_folder.npz").mkdir()
    _huge_header(folder / "huge_header.npz")


def _socket(path: Path) -> None:
    """A file that is not a regular file, as an output path. Not /dev/full: code that renames over
    its output replaces a device node, and as root it does (it happened to this suite's machine)."""
    import socket

    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


def _huge_header(path: Path) -> None:
    """An .npz whose member declares a 4 TB array and holds 16 bytes."""
    member = io.BytesIO()
    npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    member.write(b"\0" * 16)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", member.getvalue())


LOADERS = {
    "raises": "def load_data():\n    raise ValueError('the dataset is not mounted')\n",
    "returns_none": "def load_data():\n    return None\n",
    "exits": "import sys\ndef load_data():\n    sys.exit(3)\n",
    "exits_on_import": "import sys\nsys.exit(2)\n",
    "fails_midway": ("import numpy as np\ndef load_data():\n    yield {'x': np.zeros((1, 3, 8, 8), np.float32)}\n"
                     "    raise OSError('disk read error')\n"),
    "yields_lists": "def load_data():\n    yield [1, 2]\n",
    "yields_objects": "import numpy as np\ndef load_data():\n    yield {'x': np.array([object()])}\n",
    "yields_empty": "import numpy as np\ndef load_data():\n    yield {'x': np.zeros((0, 3, 8, 8), np.float32)}\n",
    "returns_dict": "import numpy as np\ndef load_data():\n    return {'x': np.zeros((1, 3, 8, 8), np.float32)}\n",
    "returns_int": "def load_data():\n    return 3\n",
    "no_function": "x = 1\n",
    "yields_nothing": "def load_data():\n    return []\n",
    "wrong_shape": "import numpy as np\ndef load_data():\n    while True:\n        yield {'x': np.zeros((1, 3, 4, 4), np.float32)}\n",
}


def _loaders(folder: Path) -> None:
    for name, body in LOADERS.items():
        (folder / f"loader_{name}.py").write_text(body)
