"""Loading hostile GGUF files: every one must raise the documented exception, never crash.

Each case runs in-process on purpose: a crash (segfault, abort, out-of-memory) in the C++
loader kills pytest itself, which is exactly the failure these tests exist to catch. Messages
must name the file and, where one is to blame, the tensor.
"""

from __future__ import annotations

import os

import gguf
import numpy as np
import pytest

from edgellama.errors import InvalidGGUFError, ModelLoadError, UnsupportedModelError
from tiny_models import DROP, GGUFLayout, patch_bytes, truncate_file, write_tiny_llama

from edgellama import Llama


def load(path):
    return Llama(str(path), n_ctx=32, n_threads=1)


def write(tmp_path, name="model.gguf", **kw):
    return write_tiny_llama(tmp_path / name, **kw)


def layout_of(path) -> GGUFLayout:
    with open(path, "rb") as f:
        return GGUFLayout.parse(f.read())


def expect(exc_type, path, *, tensor=None, mentions=()):
    """Loading `path` raises exc_type whose message names the file (and tensor)."""
    with pytest.raises(exc_type) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg or os.path.basename(str(path)) in msg, f"message does not name the file: {msg}"
    if tensor is not None:
        assert tensor in msg, f"message does not name tensor {tensor}: {msg}"
    for word in mentions:
        assert word in msg, f"message does not mention {word!r}: {msg}"
    return info.value


def test_valid_file_loads(tmp_path):
    llm = load(write(tmp_path, weight_type="Q4_0"))
    assert llm.n_vocab == 300 and llm.n_ctx == 32 and llm.n_past == 0
    assert llm.eval([1, 2, 3]).shape == (300,)


# --- not a GGUF file / cut short -----------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    expect(InvalidGGUFError, path)


def test_wrong_magic(tmp_path):
    path = write(tmp_path)
    patch_bytes(path, 0, "4s", b"GGUX")
    expect(InvalidGGUFError, path)


def test_not_gguf_at_all(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"this is a text file, not a model\n" * 10)
    expect(InvalidGGUFError, path)


@pytest.mark.parametrize("where", ["fixed_header", "metadata", "tensor_infos"])
def test_truncated_in_header(tmp_path, where):
    path = write(tmp_path)
    lay = layout_of(path)
    cut = {"fixed_header": 13,
           "metadata": (lay.header_end + lay.kv_end) // 2,
           "tensor_infos": (lay.kv_end + lay.tensor_info_end) // 2}[where]
    truncate_file(path, cut)
    expect(InvalidGGUFError, path)


def test_truncated_in_tensor_data(tmp_path):
    path = write(tmp_path)
    size = os.path.getsize(path)
    truncate_file(path, size - 100)
    expect(InvalidGGUFError, path)


def test_truncated_right_after_the_tensor_infos(tmp_path):
    path = write(tmp_path)
    truncate_file(path, layout_of(path).data_start)
    expect(InvalidGGUFError, path)


# --- absurd header numbers: must not allocate or loop on them ------------------------------------


@pytest.mark.parametrize("field_offset,value", [(8, 2**62), (16, 2**62), (8, 2**64 - 1)],
                         ids=["tensor_count", "kv_count", "tensor_count_max"])
def test_absurd_counts(tmp_path, field_offset, value):
    path = write(tmp_path)
    patch_bytes(path, field_offset, "Q", value)
    expect(InvalidGGUFError, path)


def test_absurd_string_length(tmp_path):
    path = write(tmp_path)
    patch_bytes(path, layout_of(path).header_end, "Q", 2**62)      # length of the first key
    expect(InvalidGGUFError, path)


def test_unsupported_gguf_version(tmp_path):
    path = write(tmp_path)
    patch_bytes(path, 4, "I", 99)
    expect(ModelLoadError, path)


# --- tensor table problems -----------------------------------------------------------------------


def test_missing_tensor(tmp_path):
    path = write(tmp_path, overrides={"blk.1.ffn_up.weight": DROP})
    expect(InvalidGGUFError, path, tensor="blk.1.ffn_up.weight")


def test_missing_output_norm(tmp_path):
    path = write(tmp_path, overrides={"output_norm.weight": DROP})
    expect(InvalidGGUFError, path, tensor="output_norm.weight")


@pytest.mark.parametrize("name,shape", [
    ("blk.0.attn_q.weight", (32, 64)),           # rows should be n_head*head_dim = 64
    ("blk.1.attn_k.weight", (64, 64)),           # rows should be n_head_kv*head_dim = 32
    ("blk.0.ffn_down.weight", (64, 96)),         # cols should be n_ff = 128
    ("token_embd.weight", (299, 64)),            # rows should be the vocabulary size 300
    ("blk.0.attn_norm.weight", (32,)),           # should be n_embd = 64
])
def test_wrong_shape(tmp_path, name, shape):
    path = write(tmp_path, overrides={name: {"shape": shape}})
    expect(InvalidGGUFError, path, tensor=name)


def test_unknown_tensor_type_id(tmp_path):
    path = write(tmp_path, weight_type="Q4_0")
    rec = layout_of(path).tensors["blk.0.ffn_gate.weight"]
    patch_bytes(path, rec.type_field, "I", 99)
    expect(InvalidGGUFError, path, tensor="blk.0.ffn_gate.weight")


def test_unsupported_but_valid_type(tmp_path):
    """IQ4_NL is a valid GGUF type that edgellama does not run. Its blocks have Q4_0's size
    (32 weights in 18 bytes), so relabelling a Q4_0 tensor gives a well-formed file."""
    path = write(tmp_path, weight_type="Q4_0")
    record = GGUFLayout.parse(open(path, "rb").read()).tensors["blk.0.attn_q.weight"]
    patch_bytes(path, record.type_field, "I", int(gguf.GGMLQuantizationType.IQ4_NL))
    expect(UnsupportedModelError, path, tensor="blk.0.attn_q.weight", mentions=("IQ4_NL",))


def test_tensor_data_offset_past_the_end(tmp_path):
    path = write(tmp_path)
    rec = layout_of(path).tensors["blk.1.attn_v.weight"]
    patch_bytes(path, rec.offset_field, "Q", os.path.getsize(path))
    expect(InvalidGGUFError, path, tensor="blk.1.attn_v.weight")


def test_tensor_data_offset_overflows(tmp_path):
    """offset + size wraps around 2**64: a bounds check done in uint64 arithmetic passes it."""
    path = write(tmp_path)
    rec = layout_of(path).tensors["blk.0.attn_k.weight"]
    patch_bytes(path, rec.offset_field, "Q", 2**64 - 64)
    expect(InvalidGGUFError, path, tensor="blk.0.attn_k.weight")


def test_absurd_tensor_dimension(tmp_path):
    """ne1 of a tensor patched to 2**62: its byte size overflows; must be rejected, not mapped."""
    path = write(tmp_path)
    rec = layout_of(path).tensors["blk.0.ffn_gate.weight"]
    patch_bytes(path, rec.type_field - 8, "Q", 2**62)
    expect(InvalidGGUFError, path, tensor="blk.0.ffn_gate.weight")


# --- metadata problems ---------------------------------------------------------------------------


def test_other_architecture(tmp_path):
    path = write(tmp_path, overrides={"general.architecture": "gpt2"})
    expect(UnsupportedModelError, path, mentions=("gpt2",))


def test_missing_hyper_parameter(tmp_path):
    path = write(tmp_path, overrides={"llama.block_count": DROP})
    expect(ModelLoadError, path, mentions=("block_count",))


def test_hyper_parameter_of_the_wrong_type(tmp_path):
    path = write(tmp_path, overrides={"llama.embedding_length": "sixty-four"})
    expect(ModelLoadError, path, mentions=("embedding_length",))


def test_head_count_not_divisible_by_kv_heads(tmp_path):
    path = write(tmp_path, n_embd=96, n_head=6, n_head_kv=4, head_dim=16, n_ff=128)
    expect(ModelLoadError, path)


def test_errors_are_value_errors_not_crashes(tmp_path):
    """One loop over many random single-byte corruptions of the header: each either loads or
    raises ModelLoadError (a crash would end the run)."""
    good = write(tmp_path, name="good.gguf")
    blob = good.read_bytes()
    lay = GGUFLayout.parse(blob)
    rng = np.random.default_rng(0)
    for i in range(40):
        bad = bytearray(blob)
        pos = int(rng.integers(0, lay.tensor_info_end))
        bad[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"corrupt{i}.gguf"
        path.write_bytes(bytes(bad))
        try:
            llm = load(path)
        except ModelLoadError:
            continue
        llm.eval([1, 2])


def test_header_parser_agrees_with_gguf_reader(smollm2_path):
    """Our bounded parser decodes the same metadata values and tensor table as the gguf package."""
    import gguf

    from edgellama.gguf_header import read_gguf_header

    ours = read_gguf_header(smollm2_path)
    reader = gguf.GGUFReader(str(smollm2_path))
    theirs = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert ours.metadata.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, float):
            assert ours.metadata[key] == pytest.approx(value, rel=1e-7), key
        else:
            assert ours.metadata[key] == value, key
    assert [(t.name, t.dims, t.type, t.offset, t.n_bytes) for t in ours.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type, int(t.data_offset), int(t.n_bytes))
        for t in reader.tensors]
