"""Decode a training image the way the FLSL and DINO reference loaders do."""
from __future__ import annotations

import io
import os
from typing import NamedTuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine import fileio
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from flsl_mm.datasets.bad_samples import BadSampleError
from flsl_mm.registry import TRANSFORMS

#: the smallest and largest side of an image taken for training (px); outside
#: them a sample is bad (a 1x1 thumbnail, a 100,000 px panorama)
MIN_SIDE, MAX_SIDE = 8, 32768

# start-of-frame markers (baseline, extended, progressive, lossless; not DHT
# 0xC4, JPG 0xC8, DAC 0xCC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class JpegFrame(NamedTuple):
    """What a JPEG's markers say before its pixels are decoded."""
    components: int  # 1 gray, 3 YCbCr / RGB, 4 CMYK / YCCK
    height: int
    width: int
    scan: int  # offset of the first start-of-scan marker (-1: none found)


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The frame header of a JPEG (components, size) and where its first scan
    starts, or None when ``data`` is not a JPEG this can parse."""
    if data[:2] != b'\xff\xd8':
        return None
    i, n, frame = 2, len(data), None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            return None if frame is None else frame._replace(scan=i)
        if marker in _SOF and frame is None:
            if i + 9 >= n:
                return None
            frame = JpegFrame(data[i + 9], int.from_bytes(data[i + 5:i + 7], 'big'),
                              int.from_bytes(data[i + 7:i + 9], 'big'), -1)
        i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    return frame


def jpeg_components(data: bytes) -> int | None:
    """The number of colour components of a JPEG's frame (1 gray, 3 YCbCr / RGB,
    4 CMYK / YCCK), or None when ``data`` is not a JPEG this can parse."""
    frame = jpeg_frame(data)
    return None if frame is None else frame.components


def check_image_size(path, height: int, width: int) -> None:
    """:class:`BadSampleError` for an image too small to crop views from or too
    large to decode safely (docs/pretraining.md, "Bad samples")."""
    if min(height, width) < MIN_SIDE:
        raise BadSampleError(path, f'the image is {width}x{height} px, smaller than '
                             f'{MIN_SIDE} px a side')
    if max(height, width) > MAX_SIDE:
        raise BadSampleError(path, f'the image is {width}x{height} px, larger than '
                             f'{MAX_SIDE} px a side')


@TRANSFORMS.register_module()
class LoadImageLikeImageFolder(BaseTransform):
    """Load ``results['img_path']`` as torchvision's ``ImageFolder`` does (the
    reference pretraining loaders of FLSL and DINO): ``PIL.Image.open`` then
    ``.convert('RGB')``.

    Unlike mmcv's ``LoadImageFromFile`` (OpenCV), the EXIF orientation tag is
    ignored (such an image is used as stored, not rotated) and CMYK, grayscale,
    palette and LA images are converted PIL's way (docs/pretraining.md, "Views").
    Gray and colour JPEGs are decoded by torchvision's ``decode_jpeg`` (the same
    libjpeg-turbo decoding as PIL's, bitwise equal: tested; 25 % faster), every
    other file by PIL.

    Output ``results['img']``: mmcv's BGR uint8 ``HxWx3`` array, or with
    ``to_tensor=True`` an RGB uint8 ``3xHxW`` tensor (what the device view path
    sends; for JPEGs a view of the decoded ``HxWx3`` buffer, no copy);
    ``img_shape`` and ``ori_shape`` (H, W).

    Args:
        to_tensor: output the RGB ``3xHxW`` tensor.
        backend_args: mmengine file backend arguments (e.g. for Petrel / S3).

    Raises:
        BadSampleError: (a ``ValueError``) naming the file and what is wrong: it
            is missing, empty, changed while read, a truncated JPEG (detected
            before decoding: no end-of-image marker after the scan), cannot be
            decoded, or smaller than ``MIN_SIDE`` / larger than ``MAX_SIDE`` px a
            side. The training loop replaces such a sample by default
            (docs/pretraining.md, "Bad samples").
    """

    def __init__(self, to_tensor: bool = False, backend_args: dict | None = None) -> None:
        self.to_tensor = to_tensor
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        try:
            data = self._read(path)
        except FileNotFoundError as e:
            raise BadSampleError(path, 'image file not found') from e
        except OSError as e:  # permissions, a directory, an I/O error
            raise BadSampleError(path, f'cannot read the file ({e})') from e
        if not data:
            raise BadSampleError(path, 'the file is empty (0 bytes)')
        chw = None
        frame = jpeg_frame(data)
        if frame is not None:
            check_image_size(path, frame.height, frame.width)
            # the entropy-coded data cannot hold 0xFFD9 (0xFF is stuffed), so
            # without one after the scan the file was cut short; a decoder may
            # still give an image, grey where the data is missing
            if frame.scan < 0 or data.rfind(b'\xff\xd9') < frame.scan:
                raise BadSampleError(path, 'truncated JPEG: no end-of-image marker '
                                     'after the image data')
        if frame is not None and frame.components in (1, 3):
            try:
                chw = decode_jpeg(torch.frombuffer(data, dtype=torch.uint8),
                                  mode=ImageReadMode.RGB)
            except RuntimeError:
                chw = None  # PIL decodes it or names the problem
        if chw is None:
            try:
                with Image.open(io.BytesIO(data)) as img:
                    check_image_size(path, img.height, img.width)
                    rgb = np.asarray(img.convert('RGB'))
            except BadSampleError:
                raise
            except Image.UnidentifiedImageError as e:  # its text names a BytesIO
                raise BadSampleError(path, 'cannot decode the image (not an image '
                                     'format PIL can identify)') from e
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise BadSampleError(path, f'cannot decode the image ({e})') from e
            if self.to_tensor:
                chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        if self.to_tensor:
            results['img'] = chw
        elif chw is not None:
            results['img'] = np.ascontiguousarray(chw.flip(0).permute(1, 2, 0).numpy())
        else:
            results['img'] = np.ascontiguousarray(rgb[..., ::-1])
        shape = tuple(chw.shape[1:]) if chw is not None else rgb.shape[:2]
        results['img_shape'] = shape
        results['ori_shape'] = shape
        return results

    def _read(self, path: str) -> bytearray:
        """The file's bytes (writable, for ``torch.frombuffer``); local files
        without mmengine's backend dispatch (50 us an image). A file whose size
        or modification time changes while it is read is bad (half-written)."""
        if self.backend_args is None and '://' not in str(path):
            with open(path, 'rb') as f:
                before = os.fstat(f.fileno())
                data = bytearray(before.st_size)
                got = f.readinto(data)
                after = os.fstat(f.fileno())
            if got != len(data) or (after.st_size, after.st_mtime_ns) != (
                    before.st_size, before.st_mtime_ns):
                raise BadSampleError(path, 'the file changed while being read '
                                     f'({before.st_size} bytes when opened, '
                                     f'{after.st_size} after)')
            return data
        return bytearray(fileio.get(path, backend_args=self.backend_args))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_tensor={self.to_tensor}, '
                f'backend_args={self.backend_args})')
