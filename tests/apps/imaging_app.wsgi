# A Flask app that makes thumbnails with Pillow (JPEG in, JPEG and PNG out)
# from its pip-installed environment: PIL._imaging is built into the
# group's interpreter.
import io
import sys

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


application = app
