from setuptools import find_packages, setup

setup(
    name='flsl_mm',
    version='0.1.0',
    description='FLSL (Feature-Level Self-supervised Learning) for OpenMMLab 2.x',
    packages=find_packages(include=['flsl_mm', 'flsl_mm.*']),
    python_requires='>=3.9',
)
