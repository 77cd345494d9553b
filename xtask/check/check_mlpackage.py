#!/usr/bin/env python3
"""Checks .mlpackage files with Apple's coremltools (Linux is fine; nothing is compiled).

For every package:
  1. coremltools loads it (Manifest.json, model.mlmodel) without compiling it;
  2. it must be an ML Program; coremltools' milproto loader rebuilds the MIL program op by
     op for the package's specification version, which runs every op's input validation and
     type inference;
  3. every weight blob any value refers to is read back with coremltools' blob reader and
     must hold as many elements as the value's type says;
  4. the model description's inputs and outputs must name the main function's inputs and
     outputs, in order, and the input shapes must agree.

Usage:  check_mlpackage.py [--ops] [--json] PACKAGE.mlpackage [...]
  --ops   also print the op histogram of the main block, as stored in the file
  --json  print one JSON object per package instead of text
Exit status 0 only when every package passes. Installed by `cargo xtask check-mlpackage`
into target/coremltools-venv from xtask/check/requirements.txt.
"""
import argparse
import collections
import contextlib
import io
import json
import logging
import math
import os
import sys

logging.disable(logging.WARNING)

# coremltools reports its missing macOS-only modules on stderr while it is imported.
with contextlib.redirect_stderr(io.StringIO()):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto
    from coremltools.libmilstoragepython import _BlobStorageReader

# FeatureTypes.proto ArrayFeatureType.ArrayDataType -> short name
ARRAY_TYPES = {65552: "fp16", 65568: "fp32", 65600: "fp64", 131080: "int8", 131104: "int32"}

# MIL.proto DataType -> blob reader method (see coremltools' milstorage bindings)
BLOB_READERS = {
    10: "read_fp16_data", 11: "read_float_data", 21: "read_int8_data", 22: "read_int16_data",
    23: "read_int32_data", 25: "read_int4_data", 31: "read_uint8_data", 32: "read_uint16_data",
    33: "read_uint32_data", 35: "read_uint4_data", 36: "read_uint2_data", 37: "read_uint1_data",
    38: "read_uint6_data", 39: "read_uint3_data",
}


class CheckFailed(Exception):
    """A package breaks one of the rules above."""


def describe(features):
    """(name, dtype, shape) of each feature of a model description."""
    rows = []
    for feature in features:
        kind = feature.type.WhichOneof("Type")
        if kind == "multiArrayType":
            array = feature.type.multiArrayType
            rows.append((feature.name, ARRAY_TYPES.get(array.dataType, array.dataType),
                         tuple(array.shape)))
        else:
            rows.append((feature.name, kind, None))
    return rows


def blob_values(block):
    """Every (where, Value) in a block whose value lives in a blob file, nested blocks included."""
    for op in block.operations:
        name = op.attributes["name"].immediateValue.tensor.strings.values
        where = f"{op.type} {name[0] if name else '?'}"
        for key, value in op.attributes.items():
            if value.WhichOneof("value") == "blobFileValue":
                yield f"{where} attribute {key}", value
        for key, argument in op.inputs.items():
            for binding in argument.arguments:
                if binding.WhichOneof("binding") == "value" and \
                        binding.value.WhichOneof("value") == "blobFileValue":
                    yield f"{where} input {key}", binding.value
        for inner in op.blocks:
            yield from blob_values(inner)


def check_blobs(block, weights_dir):
    """Reads every referenced blob and compares its element count with the value's type."""
    readers = {}
    for where, value in blob_values(block):
        ref = value.blobFileValue
        prefix = "@model_path/weights/"
        if not ref.fileName.startswith(prefix):
            raise CheckFailed(f"{where}: blob file {ref.fileName!r} is not under {prefix}")
        path = os.path.join(weights_dir, ref.fileName[len(prefix):])
        if path not in readers:
            if not os.path.isfile(path):
                raise CheckFailed(f"{where}: missing blob file {path}")
            readers[path] = _BlobStorageReader(path)
        tensor = value.type.tensorType
        method = BLOB_READERS.get(tensor.dataType)
        if method is None:
            raise CheckFailed(f"{where}: no blob reader for MIL data type {tensor.dataType}")
        data = getattr(readers[path], method)(ref.offset)
        want = math.prod(d.constant.size for d in tensor.dimensions)
        if len(data) != want:
            raise CheckFailed(f"{where}: blob at offset {ref.offset} holds {len(data)} elements, "
                              f"its type needs {want}")


def check_signature(spec, function):
    """The description must list the function's inputs and outputs, in order."""
    inputs, outputs = describe(spec.description.input), describe(spec.description.output)
    problems = []
    names_in = [v.name for v in function.inputs.values()]
    names_out = [v.name for v in function.outputs]
    if [row[0] for row in inputs] != names_in:
        problems.append(f"description inputs {[row[0] for row in inputs]} != function inputs {names_in}")
    if [row[0] for row in outputs] != names_out:
        problems.append(f"description outputs {[row[0] for row in outputs]} != function outputs {names_out}")
    for (name, _, shape), var in zip(inputs, function.inputs.values()):
        if shape and tuple(int(d) for d in var.shape) != tuple(shape):
            problems.append(f"input {name}: description shape {shape} != function shape {var.shape}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return inputs, outputs


def check(path, with_ops):
    """The report of one package; report["ok"] says whether it passed."""
    report = {"package": path, "ok": False}
    try:
        model = ct.models.MLModel(path, skip_model_load=True)
        spec = model.get_spec()
        report["specificationVersion"] = spec.specificationVersion
        if spec.WhichOneof("Type") != "mlProgram":
            raise CheckFailed(f"not an ML program: {spec.WhichOneof('Type')}")
        program = load_milproto(model_spec=spec, specification_version=spec.specificationVersion,
                                file_weights_dir=model.weights_dir)
        function = program.functions["main"]
        report["opset"] = function.opset_version.name if function.opset_version else None
        stored = spec.mlProgram.functions["main"]
        block = stored.block_specializations[stored.opset]
        histogram = collections.Counter(op.type for op in block.operations)
        report["op_count"] = sum(histogram.values())
        if with_ops:
            report["ops"] = dict(sorted(histogram.items()))
        check_blobs(block, model.weights_dir)
        report["inputs"], report["outputs"] = check_signature(spec, function)
        report["ok"] = True
    except Exception as e:  # every failure becomes part of the report
        report["error"] = f"{type(e).__name__}: {e}"
    return report


def print_text(report, with_ops):
    status = "ok  " if report["ok"] else "FAIL"
    print(f"{status} {report['package']}: spec {report.get('specificationVersion')} "
          f"{report.get('opset')} ops={report.get('op_count')}")
    if "error" in report:
        print(f"     {report['error']}")
    if with_ops and "ops" in report:
        print("     " + ", ".join(f"{op}={n}" for op, n in report["ops"].items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--ops", action="store_true", help="print the op histogram")
    parser.add_argument("--json", action="store_true", help="one JSON object per package")
    args = parser.parse_args()
    all_ok = True
    for path in args.packages:
        report = check(path, args.ops)
        all_ok = all_ok and report["ok"]
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print_text(report, args.ops)
            sys.stdout.flush()
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
