"""Camera-realistic augmentation on RGB uint8 arrays (numpy + OpenCV; no torchvision here).

The order follows a camera: framing (crop, scale, zoom-out), light and colour, atmosphere (haze),
optics (blur), sensor (noise, low resolution), then the encoder (JPEG). Every class gets the same
treatment, so image size, sharpness and compression stop telling the web-thumbnail fire/smoke
images apart from the scene photos in `none` (see SOURCE.md, "known weaknesses").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_CUBIC)


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 224
    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (0.5, 2.0)   # wide crops squeezed to square = a 16:9 frame stretched
    p_zoom_out: float = 0.15                        # distant subject: shrink into a larger frame
    zoom_out_range: tuple[float, float] = (0.35, 0.75)  # subject size as a share of the frame side
    # "reflect": the picture's mirror image around it (shipped); "scene": pasted into a `none` training
    # image with a feathered edge (tried: more false alarms on `none`, see docs/model-report.md)
    zoom_out_fill: str = "reflect"
    p_flip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.35
    hue_degrees: float = 5.0
    p_haze: float = 0.2
    p_blur: float = 0.25
    p_noise: float = 0.25
    p_lowres: float = 0.1
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (20, 90)
    # The source chain: every image, whatever its source size (100 px Intel, 227 px ILSVRC, 400 px photos),
    # passes through the same bottleneck (downscale, JPEG, slight blur), so sharpness and size stop naming the
    # source and so the class (data v5, SOURCE.md "known weaknesses").
    p_source_chain: float = 0.7
    source_chain_side: tuple[int, int] = (80, 224)
    # Night and monochrome: ordinary scenes darkened (gamma, gain, sensor noise) or grey like an IR camera
    # stay `none`; grey views of every class teach that colourless is not smoke.
    p_night_none: float = 0.15
    p_grey: float = 0.08
    # A camera's worst pictures (black, uniform, white, colour bars, snow, out of focus) are `none`: the gate
    # in the daemon catches most of them first, the model must not need it.
    p_poor_signal_none: float = 0.04


def resize_stretch(image: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize the whole frame to size x size, as the daemon does ("resize": "stretch")."""
    return cv2.resize(image, (size, size), interpolation=interpolation)


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    h, w = image.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = np.exp(rng.uniform(np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1])))
        cw = int(round(np.sqrt(target * ratio)))
        ch = int(round(np.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x = int(rng.integers(0, w - cw + 1))
            y = int(rng.integers(0, h - ch + 1))
            image = image[y:y + ch, x:x + cw]
            break
    return resize_stretch(image, cfg.size, int(rng.choice(_INTERPOLATIONS)))


def zoom_out(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
             backgrounds: list[np.ndarray] | None = None) -> np.ndarray:
    """Shrink the picture into a larger frame: the subject becomes small, as when far away."""
    if cfg.zoom_out_fill == "scene" and backgrounds:
        return zoom_out_into_scene(image, rng, cfg, backgrounds)
    inner = max(8, int(cfg.size * rng.uniform(*cfg.zoom_out_range)))
    small = cv2.resize(image, (inner, inner), interpolation=cv2.INTER_AREA)
    top = int(rng.integers(0, cfg.size - inner + 1))
    left = int(rng.integers(0, cfg.size - inner + 1))
    return cv2.copyMakeBorder(small, top, cfg.size - inner - top, left, cfg.size - inner - left,
                              cv2.BORDER_REFLECT_101)


def zoom_out_into_scene(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                        backgrounds: list[np.ndarray]) -> np.ndarray:
    """The subject, shrunk, blended with a feathered edge into a scene without fire or smoke (a `none`
    training image), so no rectangle gives it away; now and then into letterbox black instead."""
    size = cfg.size
    factor = rng.uniform(*cfg.zoom_out_range)
    inner_h = max(8, int(size * factor))
    inner_w = min(size, max(8, int(size * factor * rng.uniform(0.8, 1.25))))
    small = cv2.resize(image, (inner_w, inner_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    top = int(rng.integers(0, size - inner_h + 1))
    left = int(rng.integers(0, size - inner_w + 1))
    if rng.random() < 0.2:
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[top:top + inner_h, left:left + inner_w] = small
        return canvas.astype(np.uint8)
    canvas = random_resized_crop(backgrounds[int(rng.integers(len(backgrounds)))], rng, cfg).astype(np.float32)
    mask = np.zeros((size, size), np.float32)
    margin = max(1, min(inner_h, inner_w) // 8)
    mask[top + margin:top + inner_h - margin, left + margin:left + inner_w - margin] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), margin)[..., None]
    placed = canvas.copy()
    placed[top:top + inner_h, left:left + inner_w] = small
    return np.clip(placed * mask + canvas * (1 - mask), 0, 255).astype(np.uint8)


def jitter_colour(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    out = image.astype(np.float32)
    out *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = out.mean()
    out = (out - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = out.mean(axis=2, keepdims=True)
    out = (out - grey) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey
    out = np.clip(out, 0, 255).astype(np.uint8)
    if cfg.hue_degrees:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        # OpenCV's 8-bit hue runs 0..179, two degrees a step
        shift = int(round(rng.uniform(-cfg.hue_degrees, cfg.hue_degrees) / 2))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def add_haze(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend toward a bright grey airlight, like fog or distance haze over the whole frame."""
    alpha = rng.uniform(0.1, 0.5)
    airlight = rng.uniform(170, 240)
    return np.clip(image * (1 - alpha) + airlight * alpha, 0, 255).astype(np.uint8)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.7:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    length = int(rng.integers(3, 9))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    centre = (length / 2 - 0.5, length / 2 - 0.5)
    rotation = cv2.getRotationMatrix2D(centre, rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))


def add_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def lower_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    f = rng.uniform(0.25, 0.6)
    small = cv2.resize(image, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else image


def source_chain(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Downscale to a random side, JPEG-encode, blur a little and scale back: the same bottleneck for every
    source, so a 400 px photo looks no sharper than a 100 px thumbnail."""
    h, w = image.shape[:2]
    side = int(rng.integers(cfg.source_chain_side[0], cfg.source_chain_side[1] + 1))
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    small = jpeg_roundtrip(small, int(rng.integers(35, 96)))
    if rng.random() < 0.5:
        small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 0.9))
    return cv2.resize(small, (w, h), interpolation=int(rng.choice(_INTERPOLATIONS[:2] + _INTERPOLATIONS[3:])))


def darken_to_night(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ordinary scene at night or under-exposed: gamma and gain down, sensor noise up, sometimes grey (IR)."""
    x = image.astype(np.float32) / 255.0
    x = np.power(x, rng.uniform(1.2, 2.6)) * rng.uniform(0.08, 0.55)
    out = x * 255.0 + rng.normal(0, rng.uniform(1, 10), image.shape)
    if rng.random() < 0.4:
        out = out.mean(axis=2, keepdims=True).repeat(3, axis=2)
    return np.clip(out, 0, 255).astype(np.uint8)


def to_grey(image: np.ndarray) -> np.ndarray:
    """A monochrome (IR or night-mode) camera's view."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


_BAR_COLOURS = np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192],
                         [192, 0, 0], [0, 0, 192]], np.uint8)


def poor_signal_image(rng: np.random.Generator, size: int, scene: np.ndarray | None = None) -> np.ndarray:
    """One of a camera's non-pictures, all `none`: black, dark noise, uniform colour, white, colour bars,
    snow, or a scene far out of focus."""
    kind = int(rng.integers(7))
    if kind == 0:
        level = rng.uniform(0, 25)
        out = np.full((size, size, 3), level) + rng.normal(0, rng.uniform(0, 6), (size, size, 3))
    elif kind == 1:
        out = np.full((size, size, 3), rng.uniform(0, 255, 3)) + rng.normal(0, rng.uniform(0, 4), (size, size, 3))
    elif kind == 2:
        out = np.full((size, size, 3), rng.uniform(225, 255))
    elif kind == 3:
        bars = _BAR_COLOURS[np.arange(size) * len(_BAR_COLOURS) // size]
        out = np.broadcast_to(bars[None], (size, size, 3)).astype(np.float32) * rng.uniform(0.6, 1.3)
    elif kind == 4:
        grey = rng.uniform(0, 255, (size, size, 1))
        out = grey.repeat(3, axis=2) if rng.random() < 0.7 else rng.uniform(0, 255, (size, size, 3))
    elif kind == 5 and scene is not None:
        out = cv2.GaussianBlur(cv2.resize(scene, (size, size)), (0, 0), rng.uniform(8, 25)).astype(np.float32)
    else:
        ramp = np.linspace(rng.uniform(0, 128), rng.uniform(0, 255), size)[None, :, None]
        out = np.broadcast_to(ramp, (size, size, 3)) * rng.uniform(0.5, 1.0, 3)
    return np.clip(out, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
            backgrounds: list[np.ndarray] | None = None, is_none: bool = False) -> np.ndarray:
    """One random camera-like view of `image` (RGB uint8) at cfg.size x cfg.size; `backgrounds` are scenes
    without fire or smoke for zoom-out. `is_none`: the image shows neither, so views that would be wrong for
    fire or smoke (night, poor signal) may be drawn."""
    if is_none and rng.random() < cfg.p_poor_signal_none:
        return poor_signal_image(rng, cfg.size, image)
    if rng.random() < cfg.p_zoom_out:
        out = zoom_out(image, rng, cfg, backgrounds)
    else:
        out = random_resized_crop(image, rng, cfg)
    if rng.random() < cfg.p_source_chain:
        out = source_chain(out, rng, cfg)
    if rng.random() < cfg.p_flip:
        out = out[:, ::-1]
    out = jitter_colour(out, rng, cfg)
    if is_none and rng.random() < cfg.p_night_none:
        out = darken_to_night(out, rng)
    elif rng.random() < cfg.p_grey:
        out = to_grey(out)
    if rng.random() < cfg.p_haze:
        out = add_haze(out, rng)
    if rng.random() < cfg.p_blur:
        out = blur(out, rng)
    if rng.random() < cfg.p_lowres:
        out = lower_resolution(out, rng)
    if rng.random() < cfg.p_noise:
        out = add_noise(out, rng)
    if rng.random() < cfg.p_jpeg:
        out = jpeg_roundtrip(out, int(rng.integers(*cfg.jpeg_quality)))
    return np.ascontiguousarray(out)


def to_input(images: np.ndarray, mean: float = 128.0, std: float = 128.0) -> np.ndarray:
    """NHWC uint8 RGB batch -> NCHW float32, (pixel - mean) / std as the shared weights expect."""
    x = images.astype(np.float32)
    x -= mean
    x /= std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
