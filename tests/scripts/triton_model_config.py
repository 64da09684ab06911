"""Triton's ``ModelConfig`` message, from the real ``model_config.proto``,
to check the ``config.pbtxt`` files ``kerasrnn.export.to_triton`` writes
(``text_format.Parse`` into it).

The descriptor below is ``protoc --descriptor_set_out`` of
``protobuf/model_config.proto`` of triton-inference-server/common
(``SOURCE``: the commit of 2026-07-23), zlib-compressed and base64: Triton's
own schema, without grpcio-tools or tritonclient at test time.
Regenerate it (grpcio-tools installed) with

    python tests/scripts/triton_model_config.py path/to/model_config.proto
"""

import base64
import sys
import zlib

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format

SOURCE = ("https://github.com/triton-inference-server/common/blob/"
          "83adf7cf88a2f343005974dff3728be746de2d66/"
          "protobuf/model_config.proto")
DESCRIPTOR = (
    "eNrFGk2PG1kx/pqMy2NPT88kcToJyXo/CPvh3Z1AWNjlw2N7ErMee3jjSXYXoVaP3eNpre02"
    "3e0ssyfEAQnB34ADIA4ICcQBwYkLXBG/AHFB3PaAQKJevdft7nbPV3aBk/3qVdWrV69efb2G"
    "X78D6tgemCO9b08OrWF16tiereatyaHpmJO+WfldCpQdjsEMz2xbY8szHXUL8o7p2jOnb7rl"
    "1J3M3cLmc9WAphrHrzKJzOZkqgbLU8eyHcs7LqfvpO4WWTDW2rDsk6gqZCfG2MRlUnfzjP6r"
    "V2FpOLIPjBFRLjM5Ujcg17dnE6+cIYZiUPl7FlQSqTVxPQMFfODYs2ki4/uQfd+aDMpZhJU2"
    "K/E9RRhU30ZMRvjzhbk8Obmw+mVYcVAL+kioobyEk4XNG6doihWckJpRwuF05uJuMsiU/qvv"
    "wZpr4mENDOdYH5hPLH4Ey3QEr5wu7p5P1iAqprhRgKuW4TKe/6E1Mss55Jhn/pBmDNe1npjl"
    "y6Rxf6jehsKR7Xr61B5Z/eNynpQJHLRLEO1nKViNLa3uSzWnSM21C8kdH4dO4QbkhUZ0a0An"
    "kWHLAtAaVJ6H9QRKtQTwdqvT0DuPGu2acqlSgyzBi5AneG2/11UuqSuwTMMHu/tKKhjVcZQO"
    "WOx0G822kqm8KM2tZ05c20FDPjKmJjcR+kP3JcPEoPKbDIDc83TmJdrka7grwzN07xiJ06Sx"
    "9ZDGGjjXwyncqvynfhaWDm1nbIh7UNq8uahgXKy6TThM4vK1B9bYRdvn8tF/9fNw2RHyo0Vw"
    "470VZxXZJPOx1Rdg1XJ1+q97hELWv8yKlrvHoYJOfRlUYzSyP9AdYzg0B/qB4fWPpI0pNMNo"
    "YovDuc+wp55lT/DmLxNOMMZNX8MVJ/YEr9vENBxdbEu3bDLKZbZuuR170qZJsfWWXXkTlsR/"
    "dRUK2122U+vpnW6niUceAjx8XMdTDwHqDx8r6cqP0lAgJXRn3id3ev45ZD6Jc3geSiPjAP07"
    "v8YkXJaEKxJ0WwLPfVynKPnyyUr+Lho5HaAw8mrk9muhncyRws4VXYxnOEPT02kDaXJNIECd"
    "BR1nzqPjZ2BFhBfd4quRzedZQcBIgMqfUtITXIP1rVqv/lBvtps7zU5Pr3f3Oz00kGfhtpio"
    "1ev7O/vtWq/ZiCGl1FfgM2cg6Y9bvYf6e03WRV/yHNwR6Du1d2JotT1972Ftt6lk0JcoAqvV"
    "a+5IaFa9CeU4VN/GBXvNjpKr/DwFBdKvNNaYVlMLWn1VHpMw2hvxYxJswucUV2pmUakvSp1W"
    "4FNC1L06l48JHbQ6u/s9uZ1Lld+mpR99ZDou3nERTzCoLo0wRroe2U9C4hFBr7YJ9+ElJqnU"
    "z0EG/QrtqrD5zOnEtdEIKTm+2oBld2r2rUOrTyZW2HzhdNo9iY0MAkrtJVgSAnFlTWZj/Ymg"
    "cWkzRVZAmGTjajnIoADaC7Ds8+IOMETB/UMw3lqFogjCev/IxvBW+asC14R7Qh85tj40vLAW"
    "c0PHmB5JJd6N72WRpPqA4zNBprZj2Vtp87VzsCD4rqSb53vqm5DtzwaGVOynz8GpjuiMiFQb"
    "rprfNvszPqsb/b45MjGJsh2XXF1h841zsGv6DGohenbFTAKrJqyTgetTazLBmDU2x7ZzLB3z"
    "586x2i7R7RDZ1uwQ0dkacQxPqEPYsOmOxdZZ+jjrqIJlZKE6fGpoeEemo79vOhOMFQeEq3tH"
    "PIrYowH59iK7IbDeJiTBr+ej8EBjGkOkoghuTYYyQBcJuiWB2i3IkR3xdGhkPjFHZICYMdNA"
    "+/0SZPnRUobP8cTF4Bk+jdS7oBzM3GP9A8PydCSZeK6sAUoc/hjBTYKquwBEo/PLR76osPn6"
    "OS1L2Dq/dSw/9P/yXEUeSN+eHuuu55jGmIwMcxUxU8eJPYJrH2UhH7BRbwGQYnTX+tCUe84T"
    "ZA8BKoOc8JlpkvOtC8tZJf/anHjOMROs1CNYEwrAJIqfC5YkA3nDnoJ/mzPZ4jzYKrGdA7Tr"
    "kKMkQVUgg+mK9Ez8r/bvFMAc8yw1fDOqhgcfR8xFjWjfApgDubDvm8cyWeN/1R3IPTFGM1MG"
    "h89ffHlSAxNcvph+I/X/WPKjDFxJ9Gfqd1JwHYtIPdFdyjq+8bTeshoasGu4TBIWidA/UYT0"
    "JylCP1kE7c+YCIVFSsraPYCp4eA/LMNdKVbvkxCruhuwFaYZWkf7EqzGphMsZiNsMfnwwaN/"
    "WvT43JNijn8wMn1PKkaVFhQj4Zgnlbus1WWt3rt6o7ld22/zJFeBlQCKOSlmtBFIq4N10E/S"
    "skf09Zk5M2WGsQslVI+JfhGPmKtE5vufiasxRFTtCYoaEbCiFx6qX4WbA/PQmI083ec8tvqO"
    "LfoYIg5kmSZxJKudEAaWL1dFtenT25g9OdZAVA3LbINmJWVXzmFOXhob39a/xeUUjitL8XAF"
    "oSQ8912VF6AYkV4FWGLNrzXrXIt5yDWa7dq7Sqryqyxs0L4bx2hqVt8PjVjFbEwdE1Xj+HWw"
    "7yV590cN5rYCd/kVuDkXDDkax0kKue6L2eAYEX28BGvI1jWdJ6ZuOwPT4XFbqELxJ7oSrn4a"
    "Vv2ETadoLRKsLCv54DZBuZb9c4oSUIqUZRtydjdMhp7Qh8sNyY7SCU2zkNUwVRKGzW8EV4LF"
    "I/wu02VeSApjp1H1hQvxFBd2fbo4o/WhfBJB+ApnxRV+Per0T93b/H5XflqCKzS/Z+KOEDsw"
    "nRYsDSzH7Hsyvr8a5xinqGKSgnXI8LhBZLw8Egw4K0zneHmVvSCrLpFxVoIBzyu5ebqSQLcG"
    "IzNqoEInNxDL59pCnIiJMijiH8+xR3o4NXjlTLHqgoqiL1vph0bqW5BzPZSZupwJhVzCFhGb"
    "CSKs6FXenUW3j7fG35xsl6wFMz4P7R9puCxlUWuRzse59xAusjEBtibevU390Bi5pu45M9ER"
    "ybESwbc5uIdQ3tM5nEYReRacZkUOjuAd2KjeEB7XC6buHDzHi3RZsufoslRmstrX4Gq92+mx"
    "blvfa359v9mpN/W9Xo1xz5g0x5q1BrpKtQwbC3PNTkNJqzfg2sJMvctYq6FktENYCR9+YoDf"
    "gsvSJKRB3T3vYTCfUPtlClZaE8uzjBEZSFRDqYv0+tKhXt8tyH9oOrbOkYQz5i0EDuIM+DQt"
    "Qm16aubxaQ7i3bxgs7n5ZrdWAMh0iaX2lzSm6yQvZuOikA2pJ08QagDdhoKsd2TfjVr7AvSU"
    "fbekHjPecEtoUQ/fyrNvR1j3bMUKn0QT7szQmF2U0q9mD21HeBBd7EDe2BuIt8eVRFjbtkM2"
    "I3tkVVjnbIaO/QHPmfwKXLQ613DqgZwRGZf2gxSUop71zBidOitGvwHlMe5tPBvr7sj2dEwv"
    "RzLppCNJs6tyfg+n9+ez2t9C0gjnrN6Ha1yavjEZWANuEb7/cmUxdgWn6/6sr3H3xNwk/dS5"
    "SeapcpNscm6ytQarrtyp3/36XhZWyW6aE9ccH4x4nLwHWdczp7LUuR23sDkmenxzyghZ3QSu"
    "FLSdw5E1PPJ0h2vFlX2HIlvHyZacY3JK+34GspwFv2LifTV8xQhCN+hZKIpp2cWTr1Yr41A/"
    "Uf0aiEupj42pbGS8coboovjdMaYiZ1m25BCzLHmBiVmWmFXPYiZuQ8Atb/tjnhPOt+dOjb7v"
    "eErBHgmqvQnFiEgXKmzeglJUhItQV+5BSRQ6fmlFjWqP240uSASbgoA94iD+Lieedh4bzviE"
    "x+JoM0NYQ6iZ8UVYIrW78swWXpMFa3FUshqUFPP35GzoIVv7YwpyIqT9TyLNM1Bw0BXYY4GQ"
    "lQgggIRyF1aFac5DUk6GpCJNNGRc4jc0hMnl1h5DIbT3hDPdjObJN09TYPjEa/Lmd6eUjNkT"
    "l3tye6qPrAOHv5sHj2Hi1WPNnrbFjP8gVrkPV8WzGm7WFfWrLCxu8kdmPI/pyBzIknoOqPww"
    "LXN0Zk5t18KK/7g2pH7kl2HJoH/S+yxknXGKKv0wSaX9Ag+fIIm2+CihYXH/fCv8F1sSlZfl"
    "Ew5DN4DHYNaN/pF5YkvixxlYIfQdE69i31XbWHnTX91P1oTuno/vTBJUxa+fqRXH4aH2hzQU"
    "IwhqH9Ykf6zzJ551aJmOfBG5f64l5KgVUDNlHIOoJqwdWa5nD1GNuniudqVFn3ORhz55V1Dj"
    "7VKOYjDtRVDiwnBFH2JVO/JPS460l0GJ8+SfeBzM+u+b0kBTzB9uKcEpSOkr/ypK71inr4YS"
    "LZJ/3zMyPP5ALO0iGNNaBjLHUmiNpvwhn3HQ1VnI7LqYkUO1ASUZJP1KPpP8Eh55hmPFJ5HX"
    "Q9nLCfntLOU9vJczT15e8vvQIhW9kvj9hN9nr2LF7GeUHPvqQp+QZpnEwhysIJYXS2wsLDF/"
    "BWciwAif/wVYEXRytSsLq4XeZZlYQ+ax27Bih5qV5RXSXOXshiaL0OF9VAaiTzJ/5ikQr9tn"
    "9FPQZFcHsYZXl3/KJHsDAbsisbtzVvLPr4Abb4PswLopUhdMbNHRDGY8hymvEkvt5CwHmak+"
    "4V5Axy3Okl8i8RJgNpW9o1unfq/EA1/4M7NQN0ykSkHwWSYD97texCn4IOM9UPv9GIFbztP6"
    "L8fXF7ewWu9HeEhvrvRjYPUBFOR99oyhW4bkcCSZCp/SQ0QZHMYBAM0qHHRKp/I5JchwyxY7"
    "/YACellJvkci3LPCOJSXNUERpHYQ68tq8nnPswEmktZQevANLLKIjTeP976bWU/+UmAhM8A6"
    "LDljeAeLLmLuBPFXl6nAtWRrjwdqLMsScwq0UEdGVqzp0HLL5WSfGIm/rOhEwvFbfhEijtYt"
    "a8Tk2gnBSVYncqTV4Uqi4V0ow8c0I2ZoFyJ/5zxZyqvRbPJ6fHsBhxDnrXX0UYFHkKXli/9M"
    "wbKfYvPnkN67u0291XlUa7cayiX+6SBBtrrdtpLinwfScL/V6b2hpPlnZMH49ftKJgK4t6lk"
    "I4D7n1VyAUfisBRwFAwuh8dIvxweI3k+IN/eRXQIDRG7EBoi8kqw+F6PtToPlOJ8O9tIXTpY"
    "ok+E7/0HLQgI4A=="
)


def model_config_class():
    """The ``inference.ModelConfig`` message class."""
    files = descriptor_pb2.FileDescriptorSet.FromString(
        zlib.decompress(base64.b64decode(DESCRIPTOR)))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inference.ModelConfig"))


def parse(text):
    """``text`` parsed into a ``ModelConfig`` (a ``text_format.ParseError``
    names the line and column of anything Triton would refuse to read)."""
    return text_format.Parse(text, model_config_class()())


def _regenerate(proto_path):
    import pathlib
    import tempfile

    from grpc_tools import protoc

    proto_path = pathlib.Path(proto_path).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / "model_config.desc"
        code = protoc.main(["protoc", f"-I{proto_path.parent}",
                            f"--descriptor_set_out={out}",
                            str(proto_path)])
        if code:
            raise SystemExit(code)
        blob = base64.b64encode(zlib.compress(out.read_bytes(), 9))
    text = blob.decode()
    print("DESCRIPTOR = (")
    for start in range(0, len(text), 72):
        print(f'    "{text[start:start + 72]}"')
    print(")")


if __name__ == "__main__":
    _regenerate(sys.argv[1])
