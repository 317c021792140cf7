# A Flask app that makes thumbnails with Pillow (JPEG in, JPEG and PNG out)
# and computes over images and arrays with numpy, from its pip-installed
# environment: PIL._imaging and numpy's modules are built into the group's
# interpreter.
import io
import sys

import numpy as np
from flask import Flask, jsonify, request, send_file
from PIL import Image, ImageDraw, ImageFilter

app = Flask(__name__)


@app.route("/thumbnail", methods=["POST"])
def thumbnail():
    image = Image.open(io.BytesIO(request.get_data()))
    image.thumbnail((int(request.args.get("size", 64)),) * 2)
    out = io.BytesIO()
    fmt = request.args.get("format", "JPEG")
    image.convert("RGB").save(out, fmt, quality=85)
    out.seek(0)
    return send_file(out, mimetype=f"image/{fmt.lower()}")


@app.route("/draw")
def draw():
    image = Image.new("RGB", (200, 100), "white")
    pen = ImageDraw.Draw(image)
    pen.rectangle((10, 10, 90, 90), fill=(255, 0, 0))
    blurred = image.filter(ImageFilter.GaussianBlur(2))
    return jsonify(size=image.size, corner=image.getpixel((50, 50)), blurred_edge=blurred.getpixel((90, 50)),
                   origin=sys.modules["PIL._imaging"].__spec__.origin)


@app.route("/stats", methods=["POST"])
def stats():
    """An uploaded image as a numpy array: its shape and per-channel means."""
    pixels = np.asarray(Image.open(io.BytesIO(request.get_data())).convert("RGB"), dtype=np.float64)
    return jsonify(shape=list(pixels.shape), mean=[round(float(m), 6) for m in pixels.mean(axis=(0, 1))],
                   origin=sys.modules["numpy._core._multiarray_umath"].__spec__.origin)


@app.route("/gradient")
def gradient():
    """A horizontal gradient made as a numpy array, served as a PNG."""
    w, h = int(request.args.get("w", 256)), int(request.args.get("h", 16))
    row = np.linspace(0, 255, w).round().astype(np.uint8)
    image = Image.fromarray(np.tile(row, (h, 1)), mode="L")
    out = io.BytesIO()
    image.save(out, "PNG")
    out.seek(0)
    return send_file(out, mimetype="image/png")


@app.route("/numbers")
def numbers():
    """numpy's linear algebra, FFT and random generators, to compare with the
    same numpy run natively."""
    a = np.array([[4.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 4.0]])
    signal = np.sin(2 * np.pi * 3 * np.arange(32) / 32)
    return jsonify(
        solve=np.linalg.solve(a, [11.0, -16.0, 17.0]).round(9).tolist(),
        det=round(float(np.linalg.det(a)), 9),
        eigvalsh=np.linalg.eigvalsh(a).round(9).tolist(),
        fft_peak=int(np.abs(np.fft.rfft(signal)).argmax()),
        normal=np.random.default_rng(2024).normal(size=4).round(12).tolist(),
        legacy=np.random.RandomState(7).randint(0, 1000, 5).tolist(),
        poisson=np.random.default_rng(5).poisson(3.0, 6).tolist(),
        sorted=np.sort(np.array([3.5, -1.0, 2.25, 0.0])).tolist(),
        modules=sorted(m for m in sys.modules if m.startswith("numpy.") and getattr(sys.modules[m], "__spec__", None)
                       and sys.modules[m].__spec__.origin == "built-in"),
    )


application = app
