#!/usr/bin/env python3
"""A run's TensorBoard event files, read by other readers than medvlp's.

A tiny run trains with validation, then `medvlp eval` scores its checkpoint with localization maps.
Every file in RUN/tensorboard is then read record by record: the TFRecord framing with both CRCs
recomputed by crcmod's CRC-32C, each payload parsed by the protobuf runtime (python3-protobuf)
against TensorBoard's Event/Summary schema as TensorBoard publishes it (message and field names and
numbers of tensorboard/compat/proto/event.proto and summary.proto, stated below, not read from
medvlp's .proto), with no field left unknown (a wrong number or wire type would land there). The
values must equal metrics.jsonl, validation.jsonl and eval.json (as float32), and the images must
be the PNG files eval wrote, decoded by OpenCV at the size and colour space the summary states.

Usage: tensorboard_check.py MEDVLP_BINARY SOURCE_DIR WORK_DIR. Without python3-protobuf, crcmod or
OpenCV: skipped, or failed under CI=true.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import crcmod.predefined
    import cv2
    import numpy as np
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf import message_factory
except ImportError as err:
    unavailable(f"python3 lacks {err.name} (Debian: python3-protobuf, python3-crcmod, python3-opencv)")

F = descriptor_pb2.FieldDescriptorProto


def tensorboard_schema():
    """Event and Summary as TensorBoard's published protos define the parts medvlp writes."""
    fd = descriptor_pb2.FileDescriptorProto(name="tb_subset.proto", package="tensorboard", syntax="proto3")

    def field(msg, name, number, ftype, type_name=None, label=F.LABEL_OPTIONAL, oneof=None):
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof

    summary = fd.message_type.add(name="Summary")
    image = summary.nested_type.add(name="Image")
    field(image, "height", 1, F.TYPE_INT32)
    field(image, "width", 2, F.TYPE_INT32)
    field(image, "colorspace", 3, F.TYPE_INT32)
    field(image, "encoded_image_string", 4, F.TYPE_BYTES)
    value = summary.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    field(value, "node_name", 7, F.TYPE_STRING)
    field(value, "tag", 1, F.TYPE_STRING)
    field(value, "simple_value", 2, F.TYPE_FLOAT, oneof=0)
    field(value, "obsolete_old_style_histogram", 3, F.TYPE_BYTES, oneof=0)
    field(value, "image", 4, F.TYPE_MESSAGE, ".tensorboard.Summary.Image", oneof=0)
    field(summary, "value", 1, F.TYPE_MESSAGE, ".tensorboard.Summary.Value", label=F.LABEL_REPEATED)
    event = fd.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    field(event, "wall_time", 1, F.TYPE_DOUBLE)
    field(event, "step", 2, F.TYPE_INT64)
    field(event, "file_version", 3, F.TYPE_STRING, oneof=0)
    field(event, "graph_def", 4, F.TYPE_BYTES, oneof=0)
    field(event, "summary", 5, F.TYPE_MESSAGE, ".tensorboard.Summary", oneof=0)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    desc = pool.FindMessageTypeByName("tensorboard.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def unknown_fields(msg):
    """Fields the schema does not know, in msg and the messages it holds."""
    n = len(msg.UnknownFields())
    for fdesc, value in msg.ListFields():
        if fdesc.type == F.TYPE_MESSAGE:
            for m in (value if fdesc.label == F.LABEL_REPEATED else [value]):
                n += unknown_fields(m)
    return n


def read_events(path, Event):
    data = open(path, "rb").read()
    at, events = 0, []
    while at < len(data):
        assert len(data) - at >= 16, f"{path}: torn record at byte {at}"
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert length_crc == masked(header), f"{path}: length CRC at byte {at}"
        payload = data[at + 12:at + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert payload_crc == masked(payload), f"{path}: payload CRC at byte {at}"
        e = Event()
        e.ParseFromString(payload)
        assert unknown_fields(e) == 0, f"{path}: record at byte {at} has fields TensorBoard's schema lacks: {e}"
        events.append(e)
        at += 16 + length
    return events


def f32(x):
    return float(np.float32(x))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def flatten(prefix, j, out):
    if isinstance(j, dict):
        for k, v in j.items():
            flatten(f"{prefix}/{k}", v, out)
    elif isinstance(j, bool):
        out[prefix] = float(j)
    elif isinstance(j, (int, float)):
        out[prefix] = float(j)


def main():
    medvlp, source, work = sys.argv[1:4]
    Event = tensorboard_schema()
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run = os.path.join(work, "run")
    config = os.path.join(source, "tests/cli/tiny_train.yaml")
    subprocess.run([medvlp, "--log-level", "warn", "train", "-c", config, "-o", run, "--set", "train.eval_every=2",
                    "--set", "train.eval_metric=mean_auc"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([medvlp, "--log-level", "warn", "eval", "--checkpoint", run, "--set",
                    "eval.localization.overlays=2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    tb = os.path.join(run, "tensorboard")
    files = sorted(f for f in os.listdir(tb) if "tfevents" in f)
    assert len(files) == 2, f"expected the training run's and eval's event files, found {files}"
    scalars, images = {}, {}
    for name in files:
        events = read_events(os.path.join(tb, name), Event)
        assert events and events[0].file_version == "brain.Event:2", f"{name}: first record {events[:1]}"
        times = [e.wall_time for e in events]
        assert times == sorted(times), f"{name}: wall times go back"
        for e in events[1:]:
            assert e.WhichOneof("what") == "summary", f"{name}: {e}"
            for v in e.summary.value:
                key = (v.tag, e.step)
                assert key not in scalars and key not in images, f"{name}: {key} logged twice"
                if v.WhichOneof("value") == "simple_value":
                    scalars[key] = v.simple_value
                else:
                    images[key] = v.image

    expected = {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        m = json.loads(line)
        flat = {}
        flatten("train", {k: v for k, v in m.items() if k != "step"}, flat)
        expected.update({(k, m["step"]): v for k, v in flat.items()})
    for line in open(os.path.join(run, "validation.jsonl")):
        m = json.loads(line)
        flat = {}
        flatten("val", {k: v for k, v in m.items() if k not in ("step", "best_step")}, flat)
        expected.update({(k, m["step"]): v for k, v in flat.items()})
    flat = {}
    flatten("eval/test", json.load(open(os.path.join(run, "eval.json"))), flat)
    expected.update({(k, 4): v for k, v in flat.items()})
    missing = sorted(set(expected) - set(scalars))
    extra = sorted(set(scalars) - set(expected))
    assert not missing and not extra, f"tags missing {missing[:8]}, unexpected {extra[:8]}"
    wrong = [(k, scalars[k], expected[k]) for k in expected if not same(scalars[k], f32(expected[k]))]
    assert not wrong, f"values differ: {wrong[:8]}"
    for tag in ("train/total_loss", "train/lr", "val/mean_auc", "eval/test/zero_shot/mean_auc"):
        assert any(k[0] == tag for k in scalars), f"no {tag}"

    pngs = {"eval/test/roc": os.path.join(run, "eval_roc.png")}
    maps = os.path.join(run, "eval_maps")
    for name in sorted(os.listdir(maps)):
        pngs[f"eval/test/maps/{name[:-4]}"] = os.path.join(maps, name)
    assert len(pngs) >= 2, f"eval wrote no localization maps into {maps}"
    assert sorted(k[0] for k in images) == sorted(pngs), f"images {sorted(images)} vs files {sorted(pngs)}"
    channels_of = {1: 1, 2: 2, 3: 3, 4: 4}
    for (tag, step), image in images.items():
        assert step == 4, f"{tag} at step {step}"
        raw = open(pngs[tag], "rb").read()
        assert image.encoded_image_string == raw, f"{tag}: not the bytes of {pngs[tag]}"
        decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        h, w = decoded.shape[:2]
        c = 1 if decoded.ndim == 2 else decoded.shape[2]
        assert (image.height, image.width) == (h, w), f"{tag}: summary says {image.width}x{image.height}, PNG is {w}x{h}"
        assert channels_of[image.colorspace] == c, f"{tag}: colorspace {image.colorspace} for {c} channels"
    print(f"OK: {len(files)} event files, {len(scalars)} scalars and {len(images)} images read by protobuf "
          f"against TensorBoard's schema, CRCs by crcmod, PNGs by OpenCV")


if __name__ == "__main__":
    main()
