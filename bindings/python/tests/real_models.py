"""Real diffusers and transformers model classes for the ferry.torch tests, built offline
from tiny configs with seeded random weights (never downloaded), each with the inputs of
its own forward signature.

MODELS maps a name to a Spec: the package it needs, a builder, the inputs, the output
tensor of a forward and the block containers ferry should find in it."""

import dataclasses
import importlib
import math

import torch


@dataclasses.dataclass(frozen=True)
class Spec:
    package: str  # the package the class comes from ("diffusers" or "transformers")
    build: object  # () -> nn.Module, in eval mode
    inputs: object  # (seed) -> dict of forward keyword arguments
    containers: tuple  # the qualified names of the block containers ferry should split
    output: object = lambda out: out[0]  # forward's return -> the tensor to compare


def missing(package):
    """Why package cannot be used here, or None."""
    try:
        importlib.import_module(package)
    except ImportError as exc:  # Debian's python3: torch 1.13, no diffusers or transformers
        return f"{package} is not importable here: {exc}; tools/venv makes build-venv/ with it"
    return None


def randomize_(model, seed=0):
    """Every parameter (never a buffer: those are rope tables and the like) gets seeded
    random values scaled like a default init, so that no weight is zero (zero-initialized
    output projections would make every output equal)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            scale = 1 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.1
            p.copy_((torch.randn(p.shape, generator=gen) * scale).to(p.dtype))
    return model.eval()


def _diffusers(cls_name, **config):
    def build():
        import diffusers

        torch.manual_seed(0)
        return randomize_(getattr(diffusers, cls_name)(**config))
    return build


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen)


def _image_ids(side):
    ids = torch.zeros(side, side, 3)
    ids[..., 1] = torch.arange(side)[:, None]
    ids[..., 2] = torch.arange(side)[None, :]
    return ids.reshape(side * side, 3)


def _flux_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 16, 8), encoder_hidden_states=_randn(gen, 1, 6, 16),
                pooled_projections=_randn(gen, 1, 8), timestep=torch.tensor([0.5]),
                img_ids=_image_ids(4), txt_ids=torch.zeros(6, 3), guidance=torch.tensor([3.5]),
                return_dict=False)


def _qwen_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 16, 8), encoder_hidden_states=_randn(gen, 1, 6, 16),
                encoder_hidden_states_mask=torch.ones(1, 6, dtype=torch.long),
                timestep=torch.tensor([0.5]), img_shapes=[[(1, 4, 4)]], return_dict=False)


def _wan_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 4, 2, 8, 8), timestep=torch.tensor([500]),
                encoder_hidden_states=_randn(gen, 1, 6, 16), return_dict=False)


def _sd3_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 4, 8, 8), encoder_hidden_states=_randn(gen, 1, 6, 16),
                pooled_projections=_randn(gen, 1, 8), timestep=torch.tensor([500]),
                return_dict=False)


def _hunyuan_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 4, 2, 4, 4), timestep=torch.tensor([500]),
                encoder_hidden_states=_randn(gen, 1, 6, 16),
                encoder_attention_mask=torch.ones(1, 6, dtype=torch.long),
                pooled_projections=_randn(gen, 1, 8), guidance=torch.tensor([3500.0]),
                return_dict=False)


def _cogvideox_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 3, 4, 8, 8), encoder_hidden_states=_randn(gen, 1, 6, 16),
                timestep=torch.tensor([500]), return_dict=False)


def _ltx_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(hidden_states=_randn(gen, 1, 2 * 4 * 4, 4), encoder_hidden_states=_randn(gen, 1, 6, 16),
                timestep=torch.tensor([500]), encoder_attention_mask=torch.ones(1, 6),
                num_frames=2, height=4, width=4, return_dict=False)


def _transformers(cls_name, config_name, **config):
    def build():
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_name)(**config)
        return randomize_(getattr(transformers, cls_name)(cfg))
    return build


def _ids_inputs(seed, vocab=96, tokens=12):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2, tokens), generator=gen)
    mask = torch.ones(2, tokens, dtype=torch.long)
    mask[1, -3:] = 0  # one padded row
    return dict(input_ids=ids, attention_mask=mask)


MODELS = {
    "flux": Spec("diffusers", _diffusers(
        "FluxTransformer2DModel", patch_size=1, in_channels=8, num_layers=4,
        num_single_layers=8, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=8, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6)), _flux_inputs,
        ("transformer_blocks", "single_transformer_blocks")),
    "qwenimage": Spec("diffusers", _diffusers(
        "QwenImageTransformer2DModel", patch_size=1, in_channels=8, out_channels=4,
        num_layers=8, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6)), _qwen_inputs, ("transformer_blocks",)),
    "wan": Spec("diffusers", _diffusers(
        "WanTransformer3DModel", patch_size=(1, 2, 2), num_attention_heads=2,
        attention_head_dim=16, in_channels=4, out_channels=4, text_dim=16, freq_dim=32,
        ffn_dim=64, num_layers=8, rope_max_seq_len=32), _wan_inputs, ("blocks",)),
    "sd3": Spec("diffusers", _diffusers(
        "SD3Transformer2DModel", sample_size=8, patch_size=2, in_channels=4, num_layers=8,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
        caption_projection_dim=32, pooled_projection_dim=8, out_channels=4,
        pos_embed_max_size=8), _sd3_inputs, ("transformer_blocks",)),
    # Video, and another layout: double and single blocks, and the token refiner's blocks
    # two levels down in context_embedder.
    "hunyuanvideo": Spec("diffusers", _diffusers(
        "HunyuanVideoTransformer3DModel", in_channels=4, out_channels=4,
        num_attention_heads=2, attention_head_dim=16, num_layers=4, num_single_layers=8,
        num_refiner_layers=2, patch_size=1, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(4, 6, 6)), _hunyuan_inputs,
        ("context_embedder.token_refiner.refiner_blocks", "transformer_blocks",
         "single_transformer_blocks")),
    "cogvideox": Spec("diffusers", _diffusers(
        "CogVideoXTransformer3DModel", num_attention_heads=2, attention_head_dim=16,
        in_channels=4, out_channels=4, time_embed_dim=8, text_embed_dim=16, num_layers=8,
        sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        max_text_seq_length=6), _cogvideox_inputs, ("transformer_blocks",)),
    "ltxvideo": Spec("diffusers", _diffusers(
        "LTXVideoTransformer3DModel", in_channels=4, out_channels=4, num_attention_heads=2,
        attention_head_dim=16, cross_attention_dim=32, num_layers=8, caption_channels=16),
        _ltx_inputs, ("transformer_blocks",)),
    "t5-encoder": Spec("transformers", _transformers(
        "T5EncoderModel", "T5Config", vocab_size=96, d_model=32, d_kv=8, d_ff=64,
        num_layers=8, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0),
        _ids_inputs, ("encoder.block",), lambda out: out.last_hidden_state),
    "llama": Spec("transformers", _transformers(
        "LlamaForCausalLM", "LlamaConfig", vocab_size=96, hidden_size=32, intermediate_size=64,
        num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64), lambda seed: dict(_ids_inputs(seed), use_cache=False),
        ("model.layers",), lambda out: out.logits),
}
