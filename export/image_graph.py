"""The in-graph image decoding of the ``serving_default`` signature (export/savedmodel.py).

Per image, the graph does exactly this:

0. Read width and height from the header bytes and refuse the image, before any decoder
   runs, if width * height exceeds ``MAX_PIXELS`` (INVALID_ARGUMENT "image is
   20000x20000 = 400.0 megapixels; the limit is 40 megapixels"): decoders allocate from
   the header alone, so a few hundred kB can otherwise cost tens of GB. A GIF's blocks are
   walked as well: its frames together, and the canvas they span, must also stay within
   ``MAX_PIXELS`` (giflib decodes every frame, each at its own size). JPEG XL, whose
   size cannot be read cheaply, is refused.
1. Decode to uint8 RGB [H, W, 3] with ``tf.io.decode_image(..., expand_animations=False)``
   (JPEG, PNG, GIF, BMP; TensorFlow 2.21 also reads WebP). Grayscale is
   replicated to R=G=B; palette images are expanded; 16-bit PNGs keep their high byte; a
   GIF gives its first frame. PNG and WebP (the formats whose alpha means transparency)
   are decoded with their own channels and any alpha is composited onto white:
   ``floor(c * a / 255 + 255 * (1 - a / 255) + 0.5)``. Every other format is decoded with
   ``channels=3``, JPEG with ``dct_method="INTEGER_ACCURATE"`` (libjpeg's ISLOW, Pillow's
   default: the decoded pixels are bit-identical to Pillow's), BMP with 24/32-bit colour
   (the fourth byte ignored, as Pillow does) or an 8-bit palette (looked up in the graph;
   1- and 4-bit BMPs are refused with INVALID_ARGUMENT). The format is chosen by the
   magic bytes, not by a file name.
   EXIF orientation is *not* applied (TensorFlow ignores it); clients that rotate by EXIF
   (the proxy does) should send pixels.
2. Center-crop to a square of side ``s = min(H, W)``: rows ``(H - s) // 2`` to ``+ s``,
   columns ``(W - s) // 2`` to ``+ s`` (Pillow: ``box=(left, top, left + s, top + s)``).
3. If ``s != 32``: ``tf.image.resize(square, [32, 32], method="bilinear", antialias=True)``
   (a triangle filter widened by the downscale factor, half-pixel centres: Pillow's
   ``Image.resize((32, 32), Image.BILINEAR, box=...)`` computes the same filter), then
   ``floor(x + 0.5)`` clipped to 0..255 and cast to uint8. If ``s == 32`` the crop is used
   as is. Pillow rounds to uint8 between its horizontal and vertical passes, so its pixels
   may differ from these by one or two levels on resized images.
4. The uint8 [N, 32, 32, 3] batch goes through the ``pixels`` signature's computation
   (export/savedmodel.py).

A string that is not a decodable image fails the whole request with INVALID_ARGUMENT
("Unknown image file format. One of JPEG, PNG, GIF, BMP required." or the decoder's own
message for a damaged file); it never crashes the server.
"""

from __future__ import annotations

import tensorflow as tf

from export.config import GIF_BLOCK_STEPS, GIF_WALK_STEPS, IMAGE_SIZE, MAX_PIXELS

# Formats told apart by their magic bytes (the branch index of the decoder and size switches).
OTHER, JPEG, PNG, WEBP, BMP, GIF, JXL = range(7)


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """One encoded image (scalar string) -> uint8 [H, W, 3]: step 1 of the module docstring."""
    data = _check_pixel_count(data)
    any_format = lambda: tf.io.decode_image(data, channels=3, expand_animations=False)  # noqa: E731
    over_white = lambda: _over_white(tf.io.decode_image(data, expand_animations=False))  # noqa: E731
    decoders = {
        OTHER: any_format,  # not an image: decode_image's own error
        JPEG: lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        PNG: over_white,
        WEBP: over_white,
        BMP: lambda: _decode_bmp(data),
        GIF: any_format,
        JXL: any_format,  # refused by _check_pixel_count before this
    }
    return tf.switch_case(_format_of(data), decoders)


def _format_of(data: tf.Tensor) -> tf.Tensor:
    """OTHER (not an image), JPEG, PNG, WEBP, BMP, GIF or JXL, by magic bytes."""
    head = _head(data)

    def starts(magic: bytes, offset: int = 0) -> tf.Tensor:
        return tf.strings.substr(head, offset, len(magic)) == magic

    is_webp = tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8))
    is_jxl = tf.logical_or(starts(b"\xff\x0a"), starts(b"\0\0\0\x0cJXL \r\n\x87\n"))
    fmt = tf.constant(OTHER)
    for kind, is_kind in [
        (JPEG, starts(b"\xff\xd8\xff")),
        (PNG, starts(b"\x89PNG\r\n\x1a\n")),
        (WEBP, is_webp),
        (BMP, starts(b"BM")),
        (GIF, starts(b"GIF8")),
        (JXL, is_jxl),
    ]:
        fmt = tf.where(is_kind, kind, fmt)
    return fmt


def _head(data: tf.Tensor) -> tf.Tensor:
    """The first 32 bytes, zero-padded: strings shorter than a header still reach the decoder
    (and its clear error), and every header field below reads a full-length slice."""
    return tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32])


def _check_pixel_count(data: tf.Tensor) -> tf.Tensor:
    """`data`, once its header's width * height is known to be at most MAX_PIXELS.

    Decoders allocate the whole bitmap from the header alone: a 389 kB PNG whose IHDR says
    20000x20000 took 52 s and 10.8 GB in the model server. So the size is read here from a few
    header bytes (JPEG: tf.io.extract_jpeg_shape, which parses the markers up to SOF only) and
    an image over the limit fails with INVALID_ARGUMENT before any decoder runs. The fields
    are those TensorFlow's own decoders allocate from (GIF: the logical screen, then every
    frame, see _check_gif_frames; WebP: the canvas). JPEG XL is refused: its size is
    bit-packed and cannot be read cheaply here.
    """
    fmt = _format_of(data)
    width, height = tf.unstack(tf.cast(_header_size(data, fmt), tf.float64))
    pixels = width * height  # float64: two uint32 PNG fields would overflow int64
    too_big = tf.strings.join([
        "image is ", tf.strings.as_string(tf.cast(width, tf.int64)),
        "x", tf.strings.as_string(tf.cast(height, tf.int64)),
        " = ", _megapixels(pixels),
        f" megapixels; the limit is {MAX_PIXELS / 1e6:g} megapixels",
    ])  # fmt: skip
    message = tf.where(
        fmt == JXL,
        "JPEG XL is not accepted (its size cannot be checked before decoding); "
        "send JPEG, PNG, GIF, BMP or WebP",
        too_big,
    )
    ok = tf.logical_and(fmt != JXL, pixels <= MAX_PIXELS)
    gif_ok, gif_message = tf.cond(
        ok & (fmt == GIF),  # a GIF whose screen is already too big gets the message above
        lambda: _check_gif_frames(data),
        lambda: (tf.constant(True), tf.constant("")),
    )
    checks = [tf.debugging.Assert(ok, [message]), tf.debugging.Assert(gif_ok, [gif_message])]
    with tf.control_dependencies(checks):
        return tf.identity(data)


def _check_gif_frames(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(ok, message) for the frames behind a GIF's logical screen.

    The screen size alone does not bound the work: giflib (DGifSlurp) decodes every frame at
    its own size, even when the graph keeps only the first, and TensorFlow grows its output to
    a frame larger than the screen. A 189 kB GIF with a 16x16 screen and one 16000x16000 frame
    took 2.3 s and +1 GB; forty 4000x4000 frames in 518 kB took 3.7 s and +660 MB.
    """
    width, height, frame_pixels, complete = _gif_layout(data)
    canvas = width * height
    ok = complete & (canvas <= MAX_PIXELS) & (frame_pixels <= MAX_PIXELS)
    limit = f"; the limit is {MAX_PIXELS / 1e6:g} megapixels"
    message = tf.case(
        [
            (tf.logical_not(complete), lambda: tf.constant(
                "GIF has too many blocks to check its frames"
                f" (more than {GIF_WALK_STEPS} steps of the walk)"
            )),
            (canvas > MAX_PIXELS, lambda: tf.strings.join([
                "GIF frames span ", tf.strings.as_string(width), "x", tf.strings.as_string(height),
                " = ", _megapixels(canvas), " megapixels", limit,
            ])),
        ],
        default=lambda: tf.strings.join(
            ["GIF frames hold ", _megapixels(frame_pixels), " megapixels in all", limit]
        ),
    )  # fmt: skip
    return ok, message


def _megapixels(pixels: tf.Tensor) -> tf.Tensor:
    return tf.strings.as_string(tf.cast(pixels, tf.float64) / 1e6, precision=1)


def _gif_layout(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Walk a GIF's blocks: (canvas width, canvas height, pixels of all frames, walk complete).

    The canvas is the logical screen grown to every frame's extent. A GIF is a header, an
    optional global colour table, then blocks: an extension (0x21, label) or an image
    descriptor (0x2C, left, top, width, height, flags, optional local colour table, LZW code
    size), each followed by data sub-blocks (a length byte, 0 ends them), and the trailer 0x3B.
    The walk stops (incomplete) when its step budget GIF_WALK_STEPS is spent (export/config.py).
    """
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    end = tf.size(raw, out_type=tf.int64)
    raw = tf.concat([raw, tf.zeros([16], tf.int64)], 0)  # reads past the end give 0

    def byte(i: tf.Tensor) -> tf.Tensor:
        return tf.gather(raw, tf.minimum(tf.cast(i, tf.int64), end + 15))

    def u16(i: tf.Tensor) -> tf.Tensor:  # little-endian
        return byte(i) + 256 * byte(i + 1)

    def colour_table(flags: tf.Tensor) -> tf.Tensor:  # bytes of the table the flags announce
        return tf.where(
            flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0
        )

    def skip_data(pos: tf.Tensor, steps: tf.Tensor) -> list[tf.Tensor]:
        """Past the sub-blocks starting at `pos` (a tight loop: most steps are spent here)."""
        pos, steps = tf.while_loop(
            lambda pos, steps: (byte(pos) != 0) & (steps < GIF_WALK_STEPS),
            lambda pos, steps: (pos + byte(pos) + 1, steps + 1),
            [pos, steps],
        )
        return [pos + 1, steps]

    def block(pos, steps, width, height, pixels, done):
        kind = byte(pos)
        is_image = kind == 0x2C
        is_block = is_image | (kind == 0x21)  # else the trailer (or junk): the walk ends
        right, bottom = u16(pos + 1) + u16(pos + 5), u16(pos + 3) + u16(pos + 7)
        area = u16(pos + 5) * u16(pos + 7)
        data = tf.where(is_image, pos + 11 + colour_table(byte(pos + 9)), pos + 2)
        # (after the trailer, `data` is past the end: reads 0, stops at once)
        pos, steps = skip_data(data, steps + GIF_BLOCK_STEPS)
        return (
            pos,
            steps,
            tf.where(is_image, tf.maximum(width, right), width),
            tf.where(is_image, tf.maximum(height, bottom), height),
            tf.where(is_image, pixels + area, pixels),
            tf.logical_not(is_block) | (pos >= end),
        )

    start = 13 + colour_table(byte(10))
    zero = tf.constant(0, tf.int64)
    state = [start, zero, u16(6), u16(8), zero, start >= end]
    _, steps, width, height, pixels, done = tf.while_loop(
        lambda *s: tf.logical_not(s[5]) & (s[1] < GIF_WALK_STEPS), block, state
    )
    return width, height, pixels, done & (steps < GIF_WALK_STEPS)


def _header_size(data: tf.Tensor, fmt: tf.Tensor) -> tf.Tensor:
    """int64 [width, height] as the header of `data` (of format `fmt`) states them."""
    head = _head(data)

    def field(offset: int, size: int, big_endian: bool = False) -> tf.Tensor:
        """The unsigned integer of `size` bytes at `offset`."""
        raw = tf.io.decode_raw(tf.strings.substr(head, offset, size), tf.uint8)
        weights = [256**i for i in range(size)]
        return tf.reduce_sum(tf.cast(raw, tf.int64) * (weights[::-1] if big_endian else weights))

    def bmp_int32(offset: int) -> tf.Tensor:  # signed; height < 0 means top-down rows
        value = field(offset, 4)
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def webp() -> list[tf.Tensor]:
        chunk = tf.strings.substr(head, 12, 4)
        lossless = field(21, 4)  # VP8L: 14 bits width - 1, then 14 bits height - 1
        return tf.case(
            [
                (chunk == b"VP8X", lambda: [field(24, 3) + 1, field(27, 3) + 1]),
                (chunk == b"VP8L", lambda: [lossless % 2**14 + 1, lossless // 2**14 % 2**14 + 1]),
            ],
            default=lambda: [field(26, 2) % 2**14, field(28, 2) % 2**14],  # "VP8 " (lossy)
        )

    def jpeg() -> list[tf.Tensor]:
        shape = tf.io.extract_jpeg_shape(data, output_type=tf.int64)
        return [shape[1], shape[0]]

    zero = tf.constant(0, tf.int64)
    sizes = {
        OTHER: lambda: [zero, zero],  # not an image: the decoder gives the error
        JPEG: jpeg,
        PNG: lambda: [field(16, 4, big_endian=True), field(20, 4, big_endian=True)],
        WEBP: webp,
        BMP: lambda: [bmp_int32(18), bmp_int32(22)],
        GIF: lambda: [field(6, 2), field(8, 2)],
        JXL: lambda: [zero, zero],  # refused by format
    }
    return tf.stack(tf.switch_case(fmt, sizes))


def _decode_bmp(data: tf.Tensor) -> tf.Tensor:
    """BMP with 24/32-bit colour or an 8-bit palette (TensorFlow returns the palette indices)."""
    image = tf.io.decode_bmp(data)
    return tf.cond(
        tf.shape(image)[-1] == 1,
        lambda: tf.gather(_bmp_palette(data), tf.cast(image[..., 0], tf.int32)),
        lambda: image[..., :3],
    )


def _bmp_palette(data: tf.Tensor) -> tf.Tensor:
    """uint8 [colours, 3] RGB from the BGRX table after the BMP info header."""

    def uint32_at(offset: int | tf.Tensor) -> tf.Tensor:
        raw = tf.io.decode_raw(tf.strings.substr(data, offset, 4), tf.int32, little_endian=True)
        return raw[0]

    header_size, colours_used = uint32_at(14), uint32_at(46)
    colours = tf.where(colours_used > 0, colours_used, 256)
    table = tf.io.decode_raw(tf.strings.substr(data, 14 + header_size, 4 * colours), tf.uint8)
    return tf.reverse(tf.reshape(table, [-1, 4])[:, :3], axis=[1])


def _over_white(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 1..4] -> RGB, compositing any alpha channel onto white (as browsers show it).
    Only an image with alpha takes the float path: its copies cost about 0.9 GB for a
    40-megapixel PNG, which an opaque one (the common case) need not pay."""
    channels = tf.shape(image)[-1]
    has_alpha = tf.equal(channels % 2, 0)  # 2 = grey + alpha, 4 = RGB + alpha

    def blend() -> tf.Tensor:
        colour = tf.cast(image[..., : channels - 1], tf.float32)
        alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
        return _round_to_uint8(colour * alpha + 255.0 * (1.0 - alpha))

    colour = tf.cond(has_alpha, blend, lambda: image)
    return tf.broadcast_to(colour, tf.concat([tf.shape(colour)[:-1], [3]], 0))  # grey -> RGB


def _round_to_uint8(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.floor(x + 0.5), 0.0, 255.0), tf.uint8)


def decode_to_square(data: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """One encoded image (scalar string) -> uint8 [size, size, 3]: steps 1-3 of the docstring."""
    image = decode_rgb(data)
    image.set_shape([None, None, 3])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]

    def resize() -> tf.Tensor:
        resized = tf.image.resize(square, [size, size], method="bilinear", antialias=True)
        return _round_to_uint8(resized)

    square = tf.cond(side == size, lambda: square, resize)
    return tf.ensure_shape(square, [size, size, 3])


def decode_batch(image_bytes: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """Encoded images [N] -> uint8 [N, size, size, 3]."""
    return tf.map_fn(
        lambda data: decode_to_square(data, size),
        image_bytes,
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
        # One image at a time (graph mode's default is 10 at once): a request of large
        # images would otherwise hold all their full-size decodes in memory together.
        parallel_iterations=1,
    )
