"""flsl_mm's installer: ``bash tools/install.sh`` (``tools/install.py``) runs
:func:`installer.cli.main` with the interpreter of the environment to install into.

One concern per module:

* :mod:`.common` -- logging, the error type, running commands, version helpers;
* :mod:`.pins` -- what is installed: the pinned stack, the supported torch range;
* :mod:`.probe` -- what the target environment already has (Python, torch,
  torchvision, numpy, OpenCV, mmcv, flsl_mm), without changing it;
* :mod:`.resolve` -- pip's resolver (``--dry-run --report``) turned into the exact
  list of wheels to install, the user's torch / numpy / OpenCV kept;
* :mod:`.bundle` -- ``--download DIR`` (wheels + manifest, for this machine or
  another) and ``--offline DIR`` (install from it, no index);
* :mod:`.mmcv_build` -- the optional compiled mmcv (``--mmcv compiled``);
* :mod:`.cli` -- the command line, the plan and the install steps.

See ``docs/install.md``.
"""
