"""Wan/Yume checkpoints from local folders: tiny random 5B- and 14B-I2V-structured models saved
in diffusers and original (Wan/Yume) layout, sharded, loaded back on the CPU (the key conversion
included) and checked against diffusers' own model on the same weights."""

import json

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from world.base import WorldError
from world.wan import family, tiny_family
from world.wan.files import save_state, weight_files
from world.wan.keys import (
    convert_diffusers_to_original,
    convert_original_to_diffusers,
    detect_layout,
)
from world.wan.loading import load_transformer, save_transformer

FAMILIES = ("wan2.2-ti2v-5b", "wan2.1-i2v-14b")
SHARD = 6_000  # bytes: forces several shards and an index json for the tiny models


def _model(name):
    torch.manual_seed(0)
    return WanTransformer3DModel(**tiny_family(name).transformer).eval()


def _inputs(model, fam, per_token=False):
    g = torch.Generator().manual_seed(1)
    c = model.config
    x = torch.randn(1, c.in_channels, 2, 4, 4, generator=g)
    text = torch.randn(1, fam.text_len, c.text_dim, generator=g)
    kw = {"hidden_states": x, "encoder_hidden_states": text, "return_dict": False}
    tokens = 2 * 2 * 2  # frames x (4/2) x (4/2)
    kw["timestep"] = (torch.tensor([[0.0] * 4 + [700.0] * (tokens - 4)]) if per_token
                      else torch.tensor([700.0]))
    if c.image_dim:
        kw["encoder_hidden_states_image"] = torch.randn(1, fam.image_tokens, c.image_dim,
                                                        generator=g)
    return kw


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    """(family, source model, diffusers-layout folder, original-layout folder), both sharded."""
    name = request.param
    model = _model(name)
    root = tmp_path_factory.mktemp(name)
    save_transformer(model, root / "diffusers", "diffusers", max_shard_bytes=SHARD)
    save_transformer(model, root / "original", "original", max_shard_bytes=SHARD)
    return tiny_family(name), model, root / "diffusers", root / "original"


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_forward_matches_diffusers_model(saved, layout):
    fam, source, dfolder, ofolder = saved
    folder = dfolder if layout == "diffusers" else ofolder
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert len(weight_files(folder)) > 1
    loaded = load_transformer(folder)
    assert loaded.layout == layout and loaded.extras == {}
    # Every parameter covered, no missing or unexpected names, identical tensors.
    ref, got = source.state_dict(), loaded.model.state_dict()
    assert set(ref) == set(got)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    public = lambda c: {k: v for k, v in dict(c).items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.model.config) == public(source.config)
    with torch.no_grad():
        for per_token in (False, True) if fam.conditioning == "expand" else (False,):
            kw = _inputs(source, fam, per_token)
            want, have = source(**kw)[0], loaded.model(**kw)[0]
            assert have.shape == kw["hidden_states"][:, :source.config.out_channels].shape
            assert torch.allclose(have, want, atol=1e-6, rtol=1e-5)


def test_original_names_are_wans(saved):
    """The inverse renames give Wan's own names (from Wan's WanModel), checked by hand here."""
    fam, source, _, ofolder = saved
    names = set(convert_diffusers_to_original(source.state_dict()))
    block = {f"blocks.0.{m}.{p}" for m in ("self_attn.q", "self_attn.k", "self_attn.v",
                                           "self_attn.o", "cross_attn.q", "cross_attn.k",
                                           "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2",
                                           "norm3") for p in ("weight", "bias")}
    block |= {"blocks.0.modulation", "blocks.0.self_attn.norm_q.weight",
              "blocks.0.self_attn.norm_k.weight", "blocks.0.cross_attn.norm_q.weight",
              "blocks.0.cross_attn.norm_k.weight"}
    top = {"patch_embedding.weight", "patch_embedding.bias", "text_embedding.0.weight",
           "text_embedding.2.bias", "time_embedding.0.weight", "time_embedding.2.weight",
           "time_projection.1.weight", "head.head.weight", "head.head.bias", "head.modulation"}
    if fam.conditioning == "concat":
        block |= {f"blocks.0.cross_attn.{m}.{p}" for m in ("k_img", "v_img")
                  for p in ("weight", "bias")} | {"blocks.0.cross_attn.norm_k_img.weight"}
        top |= {"img_emb.proj.0.weight", "img_emb.proj.1.weight", "img_emb.proj.3.bias",
                "img_emb.proj.4.weight"}
    assert block | top <= names
    assert {n for n in names if n.startswith("blocks.0.")} == block
    written = json.loads((ofolder / "config.json").read_text())
    assert written["_class_name"] == "WanModel" and written["num_layers"] == 2


def test_renames_agree_with_diffusers_single_file_converter(saved):
    """diffusers ships an independent original->diffusers converter; ours must agree with it."""
    _, source, _, _ = saved
    state = source.state_dict()
    original = convert_diffusers_to_original(state)
    theirs = convert_wan_transformer_to_diffusers(dict(original))
    ours = convert_original_to_diffusers(original).state
    assert set(theirs) == set(ours) == set(state)
    assert all(theirs[k] is ours[k] for k in ours)


def test_yume_extras_and_prefixes_are_kept(tmp_path):
    fam = tiny_family("yume-i2v-540p")
    model = _model("wan2.1-i2v-14b")
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    extras = {"patch_embedding_2x.weight": torch.randn(dim, fam.transformer["in_channels"], 1,
                                                       4, 4),
              "patch_embedding_2x.bias": torch.randn(dim),
              "sideblock.self_attn.q.weight": torch.randn(dim, dim)}
    save_transformer(model, tmp_path / "yume", "original", extras=extras)
    loaded = load_transformer(tmp_path / "yume")
    assert set(loaded.extras) == {"patch_embedding_2x.weight", "patch_embedding_2x.bias",
                                  "sideblock.attn1.to_q.weight"}
    assert torch.equal(loaded.extras["patch_embedding_2x.bias"], extras["patch_embedding_2x.bias"])
    # ComfyUI-style prefixes are stripped; an unknown weight is refused in one sentence.
    prefixed = {f"model.diffusion_model.{k}": v
                for k, v in convert_diffusers_to_original(model.state_dict()).items()}
    assert set(convert_original_to_diffusers(prefixed).state) == set(model.state_dict())
    assert detect_layout(prefixed) == "original"
    with pytest.raises(WorldError, match="not part of the Wan/Yume layout"):
        convert_original_to_diffusers({**prefixed, "lora_A.weight": torch.zeros(1)})


def test_bf16_keeps_diffusers_fp32_modules(saved):
    _, _, dfolder, ofolder = saved
    theirs = load_transformer(dfolder, dtype=torch.bfloat16).model
    ours = load_transformer(ofolder, dtype=torch.bfloat16).model
    dtypes = {k: v.dtype for k, v in theirs.state_dict().items()}
    assert {k: v.dtype for k, v in ours.state_dict().items()} == dtypes
    assert dtypes["blocks.0.scale_shift_table"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16


def _one_sentence(err):
    text = str(err.value)
    assert "\n" not in text and text.endswith(".")
    return text


def test_clear_errors(tmp_path, saved):
    _, source, dfolder, ofolder = saved
    with pytest.raises(WorldError) as err:
        load_transformer(tmp_path / "nowhere")
    assert "No checkpoint folder" in _one_sentence(err)
    with pytest.raises(WorldError) as err:
        load_transformer(sorted(ofolder.glob("*.safetensors"))[0])
    assert "is a file" in _one_sentence(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorldError) as err:
        load_transformer(tmp_path / "empty")
    assert "not a checkpoint folder" in _one_sentence(err)
    pick = tmp_path / "pickle"
    pick.mkdir()
    torch.save({"a": torch.zeros(1)}, pick / "diffusion_pytorch_model.bin")
    with pytest.raises(WorldError) as err:
        load_transformer(pick)
    assert "never loaded" in _one_sentence(err)
    # An index that names a shard which is not there.
    broken = tmp_path / "broken"
    save_transformer(source, broken, "original", max_shard_bytes=SHARD)
    sorted(broken.glob("*-00002-of-*.safetensors"))[0].unlink()
    with pytest.raises(WorldError) as err:
        load_transformer(broken)
    assert "download is incomplete" in _one_sentence(err)
    # A weight missing and one misplaced: named, nothing half-loaded.
    state = convert_diffusers_to_original(source.state_dict())
    lacking = tmp_path / "lacking"
    save_state({k: v for k, v in state.items() if k != "blocks.1.ffn.2.weight"}, lacking)
    (lacking / "config.json").write_text((ofolder / "config.json").read_text())
    with pytest.raises(WorldError) as err:
        load_transformer(lacking)
    assert "1 missing (e.g. blocks.1.ffn.net.2.weight)" in _one_sentence(err)
    # A config.json of another model.
    wrong = tmp_path / "wrong"
    save_transformer(source, wrong, "original")
    cfg = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "num_layers": 40}))
    with pytest.raises(WorldError) as err:
        load_transformer(wrong)
    assert "disagrees with the weights" in _one_sentence(err)
    # Something that is not a Wan transformer at all.
    other = tmp_path / "other"
    save_state({"encoder.conv1.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(WorldError) as err:
        load_transformer(other)
    assert "holds no Wan transformer weights" in _one_sentence(err)


def test_full_size_configs_are_the_published_ones():
    five, fourteen = family("yume-5b-720p"), family("yume-i2v-540p")
    assert five.compression == (4, 16, 16) and five.latent_channels == 48
    assert five.transformer["in_channels"] == 48 and five.vae["is_residual"]
    assert len(five.vae["latents_mean"]) == len(five.vae["latents_std"]) == 48
    assert fourteen.compression == (4, 8, 8) and fourteen.transformer["in_channels"] == 36
    assert fourteen.transformer["image_dim"] == 1280
    with torch.device("meta"):  # sizes only: no memory is spent on 5B parameters
        n5 = sum(p.numel() for p in WanTransformer3DModel(**five.transformer).parameters())
        n14 = sum(p.numel() for p in WanTransformer3DModel(**fourteen.transformer).parameters())
    assert 4.9e9 < n5 < 5.1e9 and 16e9 < n14 < 17e9


def test_names_diffusers_ignores_are_accepted(saved, tmp_path):
    """Early diffusers conversions carry ``norm_added_q``, which diffusers skips on load."""
    _, source, dfolder, _ = saved
    dim = source.config.num_attention_heads * source.config.attention_head_dim
    save_state({**source.state_dict(), "blocks.0.attn2.norm_added_q.weight": torch.ones(dim)},
               tmp_path)
    (tmp_path / "config.json").write_text((dfolder / "config.json").read_text())
    loaded = load_transformer(tmp_path)
    assert set(loaded.model.state_dict()) == set(source.state_dict())
