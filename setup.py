"""Install keras_resnet (the builders) and export (the export tool)."""

from setuptools import find_packages, setup

# Lower bounds are the versions the test suite ran against; older releases
# were not tested.
INSTALL_REQUIRES = [
    "tensorflow>=2.21",
    "keras>=3.15,<4",
    "tf2onnx>=1.17",
    "onnx>=1.23",
    "onnxruntime>=1.32",
    "ai-edge-litert>=2.3",
    "scikit-learn>=1.9",
    # Plots of the degradation experiment; brings Pillow, which reads them.
    "matplotlib>=3.11",
    "numpy>=2.4",
]

setup(
    name="keras-resnet",
    version="0.1.0",
    description=(
        "Plain and residual Keras 3 networks with parity-checked exports to "
        "SavedModel, TFLite and ONNX"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_resnet*", "export*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=9", "pytest-xdist>=3.8"]},
    license="Apache-2.0",
)
