"""Loading a public 2D encoder (a section of ``encoders`` in the configuration) as a frozen slice encoder.

Nothing downloads. ``path`` names a local folder in the layout its project publishes:

- ``kind: dinov3`` (e.g. ``facebook/dinov3-vitb16-pretrain-lvd1689m``): a Hugging Face folder, ``config.json``
  (``model_type: dinov3_vit``) + ``model.safetensors``, and ``preprocessor_config.json`` for the resize size and
  mean/std. Loaded with transformers' ``DINOv3ViTModel.from_pretrained(..., local_files_only=True)``; any missing,
  unexpected or mis-shaped tensor is refused. Slice embedding: ``pooler_output``, the class token after the final
  LayerNorm (768 wide for ViT-B/16).
- ``kind: biomedclip`` (``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``): an open_clip folder,
  ``open_clip_config.json`` + ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``. Only the image
  tower is built (:mod:`.vit`); the checkpoint's ``visual.*`` tensors must match it exactly (the text tower's tensors
  are not used). Slice embedding: open_clip's ``encode_image`` (class token after the final LayerNorm, then the
  linear projection; 512 wide), not L2-normalised.

``path: null``: the architecture in the section's ``architecture`` (``DINOv3ViTConfig`` arguments, or an open_clip
``model_cfg`` with ``embed_dim`` and ``vision_cfg``) with random weights drawn from ``seed``; the encoder's ``info``
then says ``weights: random`` and its label ends in ``(random weights)``, which the feature index records.

Preprocessing (resize size, mean, std) comes from the folder's own file when it has one, else from the section
(``image_size``, ``mean``, ``std``); ``Preprocessing.source`` says which.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from neurovfm.features.public2d.vit import OpenClipViT, vision_spec

DINOV3 = "dinov3"
BIOMEDCLIP = "biomedclip"
KINDS = (DINOV3, BIOMEDCLIP)
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_PREPROCESSOR = "preprocessor_config.json"
HF_MODEL_TYPE = "dinov3_vit"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
VISUAL_PREFIX = "visual."


class PublicEncoderError(ValueError):
    """A public encoder folder or checkpoint that does not hold what its kind needs."""


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str  # "model folder" or "config"

    def as_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


class SliceEncoder(nn.Module):
    """A frozen 2D encoder: normalised images ``[B, 3, S, S]`` -> one embedding per image ``[B, dim]``."""

    def __init__(self, net: nn.Module, kind: str, dim: int, preprocessing: Preprocessing, info: dict):
        super().__init__()
        self.net, self.kind, self.embed_dim = net, kind, int(dim)
        self.preprocessing, self.info = preprocessing, info
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == DINOV3:
            return self.net(pixel_values=images).pooler_output
        return self.net(images)


def label(name: str, spec: dict) -> str:
    """The encoder's name in tables: ``name (random weights)`` when it has no weights folder."""
    return name if spec.get("path") else f"{name} (random weights)"


def _folder(path) -> Path:
    folder = Path(os.path.expandvars(str(path))).expanduser()  # ${VAR} from the environment, as other input paths
    if not folder.is_dir():
        raise PublicEncoderError(f"public encoder folder {folder} does not exist (nothing is downloaded at run time)")
    return folder


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PublicEncoderError(f"{path} cannot be read as JSON ({type(err).__name__})") from err


def _from_config(spec: dict) -> Preprocessing:
    return Preprocessing(int(spec["image_size"]), tuple(spec["mean"]), tuple(spec["std"]), "config")


def _checked(image_size, mean, std, where: Path) -> Preprocessing:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise PublicEncoderError(f"{where}: mean and std must be three numbers each, std positive")
    return Preprocessing(int(image_size), tuple(float(v) for v in mean), tuple(float(v) for v in std), "model folder")


def _info(name: str, spec: dict, kind: str, seed: int | None, architecture: dict, embedding: str) -> dict:
    random = not spec.get("path")
    return {
        "kind": kind,
        "label": label(name, spec),
        "path": None if random else str(spec["path"]),
        "weights": "random" if random else "pretrained",
        "random_seed": int(seed) if random else None,
        "architecture": architecture,
        "embedding": embedding,
    }


# ---------------------------------------------------------------------------------------------------- DINOv3
DINOV3_EMBEDDING = "pooler_output: class token after the final LayerNorm"


def _dinov3_random(spec: dict, seed: int):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    arch = dict(spec["architecture"])
    unknown = sorted(set(arch) - set(DINOv3ViTConfig().to_dict()))
    if unknown:
        raise PublicEncoderError(f"encoders: DINOv3 architecture keys {unknown} are not DINOv3ViTConfig arguments")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = DINOv3ViTModel(DINOv3ViTConfig(**arch))
    return model, arch


def _dinov3_folder(folder: Path):
    from transformers import DINOv3ViTModel

    cfg_path, weights = folder / HF_CONFIG, folder / HF_WEIGHTS
    if not cfg_path.is_file() or not weights.is_file():
        raise PublicEncoderError(f"{folder}: a DINOv3 folder needs {HF_CONFIG} and {HF_WEIGHTS}")
    config = _read_json(cfg_path)
    if config.get("model_type") != HF_MODEL_TYPE:
        raise PublicEncoderError(f"{cfg_path}: model_type {config.get('model_type')!r}, expected {HF_MODEL_TYPE!r}")
    model, info = DINOv3ViTModel.from_pretrained(
        str(folder), local_files_only=True, output_loading_info=True, dtype=torch.float32
    )
    problems = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems["error_msgs"] = [str(m) for m in info.get("error_msgs") or ()]
    if any(problems.values()):
        found = "; ".join(f"{k}: {v[:5]}" for k, v in problems.items() if v)
        raise PublicEncoderError(f"{weights} does not match its {HF_CONFIG} ({found})")
    arch = {k: config[k] for k in sorted(config) if not k.startswith("_") and k not in ("architectures",)}
    return model, arch


def _dinov3_preprocessing(folder: Path, spec: dict) -> Preprocessing:
    path = folder / HF_PREPROCESSOR
    if not path.is_file():
        return _from_config(spec)
    pre = _read_json(path)
    size = pre.get("size") or {}
    if "height" in size and "width" in size:
        if size["height"] != size["width"]:
            raise PublicEncoderError(f"{path}: non-square input size {size} is not supported")
        side = size["height"]
    elif "shortest_edge" in size:
        side = size["shortest_edge"]
    else:
        raise PublicEncoderError(f"{path}: no input size (size.height/width or size.shortest_edge)")
    return _checked(side, pre.get("image_mean", ()), pre.get("image_std", ()), path)


def load_dinov3(name: str, spec: dict, seed: int) -> SliceEncoder:
    if spec.get("path"):
        folder = _folder(spec["path"])
        model, arch = _dinov3_folder(folder)
        pre = _dinov3_preprocessing(folder, spec)
    else:
        model, arch = _dinov3_random(spec, seed)
        pre = _from_config(spec)
    model = model.float().eval()
    info = _info(name, spec, DINOV3, seed, arch, DINOV3_EMBEDDING)
    return SliceEncoder(model, DINOV3, model.config.hidden_size, pre, info)


# ------------------------------------------------------------------------------------------------ BiomedCLIP
BIOMEDCLIP_EMBEDDING = "encode_image: class token after the final LayerNorm, linear projection (not normalised)"


def _tower(model_cfg: dict, where) -> OpenClipViT:
    if "embed_dim" not in model_cfg or "vision_cfg" not in model_cfg:
        raise PublicEncoderError(f"{where}: an open_clip model_cfg needs embed_dim and vision_cfg")
    try:
        return OpenClipViT(vision_spec(model_cfg["vision_cfg"], model_cfg["embed_dim"]))
    except ValueError as err:
        raise PublicEncoderError(f"{where}: {err}") from err


def _visual_state(folder: Path) -> tuple[dict, Path]:
    for fname in OPEN_CLIP_WEIGHTS:
        path = folder / fname
        if path.is_file():
            break
    else:
        raise PublicEncoderError(f"{folder}: an open_clip folder needs one of {', '.join(OPEN_CLIP_WEIGHTS)}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise PublicEncoderError(f"{path}: not a state dict")
    visual = {k[len(VISUAL_PREFIX) :]: v for k, v in state.items() if k.startswith(VISUAL_PREFIX)}
    if not visual:
        raise PublicEncoderError(f"{path}: no {VISUAL_PREFIX}* tensors (not an open_clip checkpoint)")
    return visual, path


def load_state_strict(model: nn.Module, state: dict, where) -> None:
    """``model.load_state_dict(state)`` that names what is missing, unexpected or mis-shaped."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or shapes:
        parts = [f"{what} {keys[:5]}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys]
        parts += [f"shape of {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5]]
        raise PublicEncoderError(f"{where} does not fit the architecture: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_biomedclip(name: str, spec: dict, seed: int) -> SliceEncoder:
    if spec.get("path"):
        folder = _folder(spec["path"])
        cfg_path = folder / OPEN_CLIP_CONFIG
        if not cfg_path.is_file():
            raise PublicEncoderError(f"{folder}: an open_clip folder needs {OPEN_CLIP_CONFIG}")
        config = _read_json(cfg_path)
        model_cfg = config.get("model_cfg") or {}
        net = _tower(model_cfg, cfg_path)
        state, wpath = _visual_state(folder)
        load_state_strict(net, state, wpath)
        pre_cfg = config.get("preprocess_cfg") or {}
        if "mean" in pre_cfg and "std" in pre_cfg:
            pre = _checked(net.spec["image_size"], pre_cfg["mean"], pre_cfg["std"], cfg_path)
        else:
            pre = Preprocessing(net.spec["image_size"], tuple(spec["mean"]), tuple(spec["std"]), "config")
        arch = {"embed_dim": model_cfg["embed_dim"], "vision_cfg": model_cfg["vision_cfg"]}
    else:
        arch = dict(spec["architecture"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = _tower(arch, "encoders architecture").init_random()
        pre = _from_config(spec)
    if pre.image_size != net.spec["image_size"]:
        raise PublicEncoderError(
            f"BiomedCLIP image_size {pre.image_size} differs from its tower's {net.spec['image_size']} "
            "(fixed position embeddings)"
        )
    info = _info(name, spec, BIOMEDCLIP, seed, arch, BIOMEDCLIP_EMBEDDING)
    return SliceEncoder(net.float().eval(), BIOMEDCLIP, net.embed_dim, pre, info)


LOADERS = {DINOV3: load_dinov3, BIOMEDCLIP: load_biomedclip}


def load_public(name: str, spec: dict, seed: int, device: str | torch.device = "cpu") -> SliceEncoder:
    """The frozen slice encoder of the ``encoders.{name}`` section ``spec`` on ``device``."""
    kind = spec.get("kind")
    if kind not in LOADERS:
        raise PublicEncoderError(f"encoders.{name}: kind {kind!r}, expected one of {', '.join(KINDS)}")
    return LOADERS[kind](name, spec, seed).to(device)
