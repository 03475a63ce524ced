"""The demo cooperative's products, and a photo of each drawn with Pillow (nothing is downloaded at run time)."""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class DemoVariant:
    sku: str
    name: str
    unit: str
    price_vnd: int
    weight_grams: int
    stock: int


@dataclass(frozen=True)
class DemoProduct:
    name: str
    category: str
    description: str
    look: str  # how its photo is drawn: see ``photo``
    variants: tuple[DemoVariant, ...]
    shelf_life_days: int | None = None

    def body(self) -> dict[str, Any]:
        """The create-product request for it."""
        body: dict[str, Any] = {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "variants": [
                {
                    "sku": v.sku,
                    "name": v.name,
                    "unit": v.unit,
                    "price_vnd": v.price_vnd,
                    "weight_grams": v.weight_grams,
                    "initial_stock": v.stock,
                }
                for v in self.variants
            ],
        }
        if self.shelf_life_days is not None:
            body["shelf_life_days"] = self.shelf_life_days
        return body


PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct(
        name="Hạt điều rang muối Bình Phước",
        category="nuts",
        description="Hạt điều loại A, rang củi, còn vỏ lụa, đóng hũ tại hợp tác xã.",
        look="cashew",
        variants=(
            DemoVariant("DIEU-RM-500", "Hũ 500 g", "hu", 165_000, 600, 40),
            DemoVariant("DIEU-RM-1KG", "Túi 1 kg", "tui", 310_000, 1_100, 25),
        ),
        shelf_life_days=180,
    ),
    DemoProduct(
        name="Tiêu đen Lộc Ninh hạt to phơi nắng",
        category="spices",
        description="Tiêu đen hạt to, phơi nắng, không tẩm màu.",
        look="pepper",
        variants=(
            DemoVariant("TIEU-DEN-250", "Gói 250 g", "tui", 65_000, 300, 60),
            DemoVariant("TIEU-DEN-1KG", "Túi 1 kg", "tui", 220_000, 1_050, 20),
        ),
        shelf_life_days=365,
    ),
    DemoProduct(
        name="Sầu riêng Ri6 Bù Đốp chín cây",
        category="fruit",
        description="Sầu riêng Ri6 chín cây, cơm vàng, hạt lép. Giao trong ngày thu hoạch.",
        look="durian",
        variants=(DemoVariant("SR-RI6-KG", "1 kg (trái 2,5–4 kg)", "kg", 95_000, 1_000, 80),),
        shelf_life_days=4,
    ),
    DemoProduct(
        name="Cà phê Robusta rang mộc Bình Phước",
        category="coffee",
        description="Robusta Bình Phước rang mộc, không pha trộn, xay theo yêu cầu.",
        look="coffee",
        variants=(
            DemoVariant("CF-ROB-500", "Gói 500 g", "tui", 120_000, 520, 35),
            DemoVariant("CF-ROB-1KG", "Gói 1 kg", "tui", 230_000, 1_030, 15),
        ),
        shelf_life_days=270,
    ),
    DemoProduct(
        name="Mật ong hoa cà phê nguyên chất",
        category="honey",
        description="Mật ong nguyên chất từ vườn cà phê mùa hoa, chai thủy tinh.",
        look="honey",
        variants=(DemoVariant("MO-CF-500", "Chai 500 ml", "chai", 150_000, 800, 30),),
        shelf_life_days=720,
    ),
)

_LOOKS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str]] = {
    # background, foreground, shape
    "cashew": ((250, 236, 208), (196, 120, 58), "kidney"),
    "pepper": ((236, 230, 220), (40, 32, 28), "grain"),
    "durian": ((226, 240, 214), (112, 150, 40), "spiky"),
    "coffee": ((244, 232, 218), (92, 52, 30), "bean"),
    "honey": ((255, 246, 214), (226, 152, 20), "hexagon"),
}


def photo(look: str, *, size: int = 1200, seed: int = 0) -> bytes:
    """A JPEG that reads as the product at a glance: its colours and its shape, many times over."""
    background, colour, shape = _LOOKS[look]
    rng = random.Random(f"{look}:{seed}")  # noqa: S311 - a picture, not a secret
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(70 if shape in ("grain", "bean") else 22):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        r = (
            (rng.uniform(0.05, 0.09) if shape == "bean" else rng.uniform(0.03, 0.06)) * size
            if shape in ("grain", "bean")
            else rng.uniform(0.07, 0.12) * size
        )
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
        fill = (shade[0], shade[1], shade[2])
        if shape == "grain":
            draw.ellipse((x - r / 2, y - r / 2, x + r / 2, y + r / 2), fill=fill)
        elif shape == "bean":
            draw.ellipse((x - r / 2, y - r / 3, x + r / 2, y + r / 3), fill=fill)
            draw.line((x - r / 2.5, y, x + r / 2.5, y), fill=background, width=max(2, int(r / 12)))
        elif shape == "kidney":
            draw.pieslice((x - r, y - r / 1.6, x + r, y + r / 1.6), 200, 520, fill=fill)
        elif shape == "spiky":
            points = [
                (x + (r if i % 2 == 0 else r * 0.75) * _cos(i * 15), y + (r if i % 2 == 0 else r * 0.75) * _sin(i * 15))
                for i in range(24)
            ]
            draw.polygon(points, fill=fill)
        else:  # hexagon
            draw.polygon(
                [(x + r * _cos(60 * i), y + r * _sin(60 * i)) for i in range(6)], fill=fill, outline=background
            )
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _cos(degrees: float) -> float:
    return math.cos(math.radians(degrees))


def _sin(degrees: float) -> float:
    return math.sin(math.radians(degrees))
