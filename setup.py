from setuptools import find_packages, setup

setup(
    name='flsl_mm',
    version='0.1.0',
    description='FLSL (Feature-Level Self-supervised Learning) for OpenMMLab 2.x',
    packages=find_packages(include=['flsl_mm', 'flsl_mm.*']),
    # the interpreter start-up hook (flsl_mm_mmcv_ext.pth, written by
    # tools/install.sh): mmcv without compiled ops works without importing flsl_mm
    py_modules=['flsl_mm_startup'],
    python_requires='>=3.9',
)
