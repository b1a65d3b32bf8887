#!/usr/bin/env bash
# Workstation/CI install: a venv with edgecam[train,test], plus MediaPipe for the test that
# proves a standard consumer reads our metadata. MediaPipe goes in with --no-deps: its
# opencv-contrib-python requirement would overwrite the OpenCV that edgecam installs.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[train,test]"
"$venv/bin/python" -m pip install --quiet --no-deps "mediapipe==1.2.3" "sounddevice>=0.5,<0.6"
# Tests that drive a real window (Xvfb with the openbox window manager, xdotool, screenshots,
# OCR), a real browser (Chromium) or a real MQTT broker (mosquitto, with certificates made by
# openssl) need these Debian tools; without them those tests skip and say why. Installed when we
# may (root with apt).
# Java 17 runs Sony's IMX500 converter (`edgecam imx500 setup`, export.target=imx500).
apt_tools=(xvfb openbox xdotool imagemagick tesseract-ocr chromium mosquitto openssl openjdk-17-jre-headless)
missing=()
for tool in Xvfb openbox xdotool import tesseract chromium mosquitto openssl java; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_tools[@]}" >/dev/null
fi
# OpenCV's wheel needs libGL and glib from the system; a bare server may lack them.
if ! "$venv/bin/python" -c "import cv2" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null
    else
        echo "OpenCV needs libGL: sudo apt-get install libgl1 libglib2.0-0" >&2
        exit 1
    fi
fi
"$venv/bin/python" -c "import cv2, tensorflow, ai_edge_litert, edgecam" 2>/dev/null
echo "installed edgecam into $venv"
