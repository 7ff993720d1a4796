# Copyright (c) mdeq_mm authors. All rights reserved.
"""Loading transforms that name the file when it cannot be used.

mmcv's ``LoadImageFromFile`` decodes a truncated JPEG without complaint
(the missing rows come out grey) and reports other failures as a bare
assertion deep in a DataLoader traceback; mmseg's ``LoadAnnotations``
accepts raw Cityscapes label ids and label maps of another size than
their image, which fail much later (an IndexError in the loss, a crop
mismatch) or silently train on wrong labels. These subclasses check each
file as it is loaded and raise :class:`~mdeq_mm.datasets.DataFileError`
naming the file and the fix, or, with ``on_bad_file='skip'``, drop the
sample (training then draws another one) and count it.
"""
import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import MMLogger

from mdeq_mm.registry import register
from .checks import DataFileError, label_value_problem
from .cityscapes_labels import IGNORE, TRAIN_IDS

BAD_FILE_MODES = ('raise', 'skip')


def truncation(data: bytes) -> str:
    """Why ``data`` is an incomplete JPEG or PNG file, or '' if it is not.

    A JPEG ends with the EOI marker (FF D9), which cannot occur inside the
    entropy-coded data; a PNG ends with its IEND chunk. Other formats are
    left to the decoder."""
    if data[:2] == b'\xff\xd8':
        sos = data.find(b'\xff\xda')
        eoi = data.rfind(b'\xff\xd9', max(0, len(data) - 1024))
        if sos < 0 or eoi < sos:
            return 'JPEG data ends before its end-of-image marker'
    elif data[:8] == b'\x89PNG\r\n\x1a\n':
        if data.rfind(b'IEND', max(0, len(data) - 64)) < 0:
            return 'PNG data ends before its IEND chunk'
    return ''


def png_bit_depth(data: bytes) -> int:
    """The bit depth of a PNG (its IHDR chunk), 0 for other data."""
    if data[:8] != b'\x89PNG\r\n\x1a\n' or len(data) < 25:
        return 0
    return data[24]


class _BadFiles:
    """Raise or skip-and-count a bad file."""

    def _init_bad_files(self, on_bad_file: str) -> None:
        if on_bad_file not in BAD_FILE_MODES:
            raise ValueError(f'on_bad_file must be one of {BAD_FILE_MODES}, '
                             f'got {on_bad_file!r}')
        self.on_bad_file = on_bad_file
        self.skipped = 0

    def _bad(self, path: str, problem: str, fix: str = ''):
        msg = f'{path}: {problem}.' + (f' {fix}' if fix else '')
        if self.on_bad_file == 'raise':
            raise DataFileError(msg)
        self.skipped += 1
        MMLogger.get_current_instance().warning(
            f'skipped a bad file ({self.skipped} so far in this worker): '
            f'{msg}')
        return None


@register('TRANSFORMS')
class CheckedLoadImageFromFile(_BadFiles, LoadImageFromFile):
    """``LoadImageFromFile`` that rejects truncated and undecodable files.

    Images always come out with 3 channels in BGR order for the default
    ``color_type='color'``, also from grayscale and CMYK JPEGs and from a
    PNG file named ``.JPEG`` (all of which real ImageNet contains).

    Args:
        on_bad_file (str): 'raise' (default) a
            :class:`~mdeq_mm.datasets.DataFileError` naming the file, or
            'skip' the sample (training draws another one; test-time
            loaders cannot skip).
        **kwargs: ``LoadImageFromFile`` arguments.
    """

    def __init__(self, on_bad_file: str = 'raise', **kwargs):
        super().__init__(**kwargs)
        self._init_bad_files(on_bad_file)

    def transform(self, results: dict):
        path = results['img_path']
        fix = ('Re-download or re-extract it, or remove it from the split '
               "(or build the loader with on_bad_file='skip')")
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except OSError as e:
            return self._bad(path, f'cannot be read ({e})', fix)
        problem = truncation(data)
        img = None
        if not problem:
            try:
                img = mmcv.imfrombytes(
                    data, flag=self.color_type,
                    backend=self.imdecode_backend)
            except Exception as e:  # decoders raise many types
                problem = f'cannot be decoded ({type(e).__name__}: {e})'
            if img is None and not problem:
                problem = 'cannot be decoded (not an image, or corrupt)'
        if problem:
            return self._bad(path, problem, fix)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


try:
    from mmseg.datasets.transforms import LoadAnnotations
except ImportError:  # mmseg not installed: image loading only
    LoadAnnotations = None

if LoadAnnotations is not None:

    @register('TRANSFORMS')
    class CheckedLoadAnnotations(_BadFiles, LoadAnnotations):
        """mmseg's ``LoadAnnotations`` with checks of each label map: it is
        complete, has one channel, has the size of its image (load the
        image first), and with ``num_classes`` holds only class indices
        and ``ignore_index`` (raw Cityscapes label ids are reported with
        the converter command).

        Args:
            num_classes (int | None): number of classes; None skips the
                value check.
            ignore_index (int): the ignore label.
            on_bad_file (str): 'raise' or 'skip' (see
                :class:`CheckedLoadImageFromFile`).
            **kwargs: ``LoadAnnotations`` arguments.
        """

        def __init__(self, num_classes=None, ignore_index: int = IGNORE,
                     on_bad_file: str = 'raise', **kwargs):
            super().__init__(**kwargs)
            self.num_classes = num_classes
            self.ignore_index = ignore_index
            self._init_bad_files(on_bad_file)

        def transform(self, results: dict):
            path = results['seg_map_path']
            fix = 'Re-extract it from the download, or remove the pair'
            try:
                data = fileio.get(path, backend_args=self.backend_args)
                problem = truncation(data)
                if not problem and png_bit_depth(data) > 8:
                    # mmseg casts to uint8: 258 would be read as class 2
                    return self._bad(
                        path, f'a {png_bit_depth(data)}-bit label map (mmseg '
                        'reads label maps as 8-bit: values above 255 would '
                        'wrap, 258 read as class 2)', 'Save the train-id maps '
                        'as 8-bit PNGs (values 0..num_classes-1 and 255)')
                if not problem:
                    self._load_seg_map(results)
            except OSError as e:
                problem = f'cannot be read or decoded ({e})'
            if problem:
                return self._bad(path, problem, fix)
            lab = results['gt_seg_map']
            if lab.ndim != 2:
                return self._bad(
                    path, f'a label map has one channel, this one has shape '
                    f'{lab.shape}', f'Use the *{TRAIN_IDS} files (not '
                    '*_gtFine_color.png)')
            shape = results.get('ori_shape')
            if shape is not None and tuple(lab.shape) != tuple(shape):
                return self._bad(
                    path, f'is {lab.shape[1]}x{lab.shape[0]} but its image '
                    f"{results.get('img_path')} is {shape[1]}x{shape[0]} "
                    '(width x height)', fix)
            if self.num_classes is not None:
                problem = label_value_problem(lab, self.num_classes,
                                              self.ignore_index)
                if problem:  # (the problem names the fix)
                    return self._bad(path, problem)
            return results
