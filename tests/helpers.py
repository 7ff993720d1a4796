# Copyright (c) mdeq_mm authors. All rights reserved.
"""Small builders of model inputs shared by the tests."""
import torch


def seg_batch(n=2, h=32, w=32, num_classes=3, seed=0):
    """A raw mmseg batch (uint8 images + SegDataSample with metainfo)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 255, (3, h, w), generator=g).byte())
        s = SegDataSample()
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, h, w), generator=g))
        s.set_metainfo(
            dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                 padding_size=[0, 0, 0, 0]))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def cls_batch(n=4, size=32, num_classes=3, seed=0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=torch.randn(n, 3, size, size, generator=g),
        data_samples=[
            DataSample().set_gt_label(i % num_classes) for i in range(n)
        ])


def make_contractive(mdeq):
    """Make an MDEQ's f contractive (random init's is not: its solve stalls
    at a relative residual of ~0.4): the output GroupNorms' gains scaled by
    0.1 and a positive bias (so that the final ReLUs are active); Broyden
    then reaches 1e-6 in ~25 evaluations on the tiny arch. Returns
    ``mdeq``."""
    with torch.no_grad():
        for mod in mdeq.deq_layer.post_fuse_layers.modules():
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.mul_(0.1)
                mod.bias.add_(0.5)
    return mdeq


def scaled_problem(dim=8, bsz=2, radius=0.9, seed=0):
    """A (dim, dim) float64 matrix of spectral norm ``radius`` and a
    (bsz, dim) right-hand side, seeded."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    A = radius * A / torch.linalg.matrix_norm(A, 2)
    b = torch.randn(bsz, dim, generator=g, dtype=torch.float64)
    return A, b


def tool_env(**extra):
    """The environment of a tool process in the tests: the repository root
    on PYTHONPATH, so that configs can ``custom_imports`` the tests' plugin
    modules (``tests.plugins``), as a user's own modules are made
    importable; the tools themselves import the installed package."""
    import os
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH'))
                           if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


_SERVER = []


def _server():
    """The session's :class:`tests.tool_server.ToolServer` (started on
    first use; ``MDEQ_MM_TEST_FORK=0`` runs every tool in a fresh
    interpreter instead)."""
    if not _SERVER:
        import atexit

        from tests.tool_server import ToolServer
        _SERVER.append(ToolServer(tool_env()))
        atexit.register(_SERVER[0].close)
    return _SERVER[0]


def run_tool(name, *args, ok=True, timeout=300):
    """Run ``tools/<name>.py`` as its own process from the repository root
    (a fork of the tests' preloaded tool server: the same script as
    ``__main__``, its own process, cwd, arguments and exit code, without
    the import cost); return its combined output (asserting success unless
    ``ok=False``, which returns ``(output, exit code)``)."""
    import os
    import os.path as osp
    import subprocess
    import sys
    import tempfile
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    argv = [f'tools/{name}.py', *map(str, args)]
    if os.environ.get('MDEQ_MM_TEST_FORK', '1') == '0':
        res = subprocess.run([sys.executable, *argv], cwd=root,
                             capture_output=True, text=True,
                             timeout=timeout, env=tool_env())
        out, rc = res.stdout + res.stderr, res.returncode
    else:
        fd, path = tempfile.mkstemp(prefix='mdeq_mm_tool_', suffix='.log')
        os.close(fd)
        try:
            rc = _server().run(argv, root, tool_env(), path, timeout)
            with open(path, errors='replace') as f:
                out = f.read()
        finally:
            os.remove(path)
    if ok:
        assert rc == 0, out[-4000:]
    return (out, rc) if not ok else out


def cityscapes_train_ids(root, **kwargs):
    """Write data as the Cityscapes download holds it under ``root``, then
    convert its label ids to train ids like the converter tool does."""
    from mdeq_mm.datasets import convert_cityscapes
    from mdeq_mm.datasets.demo_data import write_cityscapes
    write_cityscapes(str(root), **kwargs)
    convert_cityscapes(str(root))
    return str(root)
