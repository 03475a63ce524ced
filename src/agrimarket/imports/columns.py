"""The columns of an import file: what each means, and the headers offices write for it.

A header matches when its folded form (lower case, accents and punctuation dropped, a unit in brackets ignored)
is one of the column's aliases, so "Giá bán (VNĐ)", "GIA BAN" and "giá  bán" all name the price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agrimarket.kit.text import fold

_BRACKETS = re.compile(r"[\(\[].*?[\)\]]")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Column:
    field: str  # the row schema's field
    header: str  # the Vietnamese header the template writes
    english: str
    aliases: tuple[str, ...]
    required: bool  # the file must have this column
    help_vi: str
    help_en: str
    example: str


COLUMNS: tuple[Column, ...] = (
    Column(
        "household",
        "Hộ sản xuất",
        "Household",
        (
            "ho san xuat",
            "ho",
            "ho thanh vien",
            "thanh vien",
            "ma ho",
            "ma thanh vien",
            "sdt ho",
            "so dien thoai",
            "dien thoai",
            "sdt",
            "household",
            "member",
            "member code",
            "phone",
        ),
        False,
        "Số điện thoại chủ hộ hoặc mã thành viên trong hợp tác xã (ví dụ HTX-012). "
        "Bỏ trống khi hộ tự nhập cho chính mình.",
        "The household owner's phone number or the member code in the cooperative (e.g. HTX-012). "
        "Leave empty when a household imports its own products.",
        "0912345678",
    ),
    Column(
        "sku",
        "Mã SKU",
        "SKU",
        ("ma sku", "sku", "ma hang", "ma san pham", "ma sp", "ma"),
        True,
        "Mã riêng của từng quy cách: chữ A-Z, số và - _ . (không dấu, không khoảng trắng). Không trùng trong tệp.",
        "Each size's own code: letters A-Z, digits and - _ . (no accents or spaces). Once per file.",
        "SR-RI6-1KG",
    ),
    Column(
        "name",
        "Tên sản phẩm",
        "Product name",
        ("ten san pham", "ten sp", "san pham", "ten hang", "ten", "product", "product name", "name"),
        True,
        "Tên sản phẩm như người mua thấy. Các dòng cùng tên của một hộ là các quy cách của một sản phẩm.",
        "The product's name as buyers see it. A household's rows with the same name are sizes of one product.",
        "Sầu riêng Ri6 Bình Phước",
    ),
    Column(
        "variant_name",
        "Quy cách",
        "Variant",
        ("quy cach", "phan loai", "ten phan loai", "dong goi", "variant", "variant name", "size"),
        False,
        "Quy cách đóng gói, ví dụ “Hộp 1 kg”. Bỏ trống: “Tiêu chuẩn”.",
        "The pack, e.g. “Hộp 1 kg”. Empty: “Tiêu chuẩn” (standard).",
        "Hộp 1 kg",
    ),
    Column(
        "category",
        "Danh mục",
        "Category",
        ("danh muc", "loai", "nhom hang", "nganh hang", "category"),
        False,
        "Trái cây, Hạt, Gia vị, Cà phê, Trà, Mật ong, Rau củ, Gạo, Đồ khô, Khác. Bỏ trống: Khác (sản phẩm mới) "
        "hoặc giữ nguyên.",
        "fruit, nuts, spices, coffee, tea, honey, vegetables, rice, dried, other (or the Vietnamese words). "
        "Empty: other for a new product, else unchanged.",
        "Trái cây",
    ),
    Column(
        "unit",
        "Đơn vị",
        "Unit",
        ("don vi", "don vi tinh", "dvt", "unit"),
        False,
        "kg, g, hộp, thùng, túi, chai, hũ, quả (trái), bó, lít, cái. Bắt buộc cho sản phẩm mới.",
        "kg, g, box (hộp), carton (thùng), bag (túi), bottle (chai), jar (hũ), piece of fruit (quả/trái), "
        "bunch (bó), litre (lít), item (cái). Required for a new SKU.",
        "hộp",
    ),
    Column(
        "price_vnd",
        "Giá bán",
        "Price (VND)",
        ("gia ban", "gia", "don gia", "gia ban le", "price", "price vnd", "gia vnd"),
        True,
        "Giá bằng đồng, số nguyên: 120000, 120.000 hoặc 120.000 ₫.",
        "Whole đồng: 120000, 120.000 or 120.000 ₫.",
        "120.000",
    ),
    Column(
        "on_hand",
        "Tồn kho",
        "Stock",
        ("ton kho", "so luong", "so luong ton", "sl", "ton", "kho", "stock", "on hand", "quantity", "qty"),
        True,
        "Số lượng đang có trong kho (số nguyên, từ 0). Ghi đè số hiện tại.",
        "The quantity on hand now (a whole number, from 0). Replaces the current count.",
        "25",
    ),
    Column(
        "weight_grams",
        "Khối lượng (g)",
        "Weight (g)",
        ("khoi luong", "khoi luong g", "trong luong", "can nang", "weight", "weight grams", "weight g"),
        False,
        "Khối lượng gửi hàng kể cả bao bì, tính bằng gram. Bắt buộc cho sản phẩm mới.",
        "Shipping weight with packaging, in grams. Required for a new SKU.",
        "1200",
    ),
    Column(
        "harvest_date",
        "Ngày thu hoạch",
        "Harvest date",
        ("ngay thu hoach", "thu hoach", "harvest date", "harvested"),
        False,
        "Ngày/tháng/năm, ví dụ 15/06/2026.",
        "Day/month/year, e.g. 15/06/2026.",
        "15/06/2026",
    ),
    Column(
        "shelf_life_days",
        "Hạn sử dụng (ngày)",
        "Shelf life (days)",
        ("han su dung", "hsd", "so ngay su dung", "shelf life", "shelf life days"),
        False,
        "Số ngày dùng được kể từ ngày thu hoạch.",
        "Days the product keeps from its harvest date.",
        "10",
    ),
    Column(
        "description",
        "Mô tả",
        "Description",
        ("mo ta", "mo ta san pham", "ghi chu san pham", "description"),
        False,
        "Mô tả cho người mua. Không bắt đầu bằng = + - @.",
        "The description buyers read. Must not start with = + - @.",
        "Cơm vàng, hạt lép, vỏ mỏng.",
    ),
)

BY_FIELD = {column.field: column for column in COLUMNS}
# Free text a spreadsheet would run as a formula if it started with = + - @ (the household may be "+84…").
TEXT_FIELDS = ("name", "variant_name", "description")


def header_key(header: str) -> str:
    """``"Giá bán (VNĐ)"`` → ``"gia ban"``: what aliases are compared with."""
    return " ".join(_NOT_WORD.sub(" ", fold(_BRACKETS.sub(" ", header))).split())


_ALIASES: dict[str, str] = {}
for _column in COLUMNS:
    for _alias in (*_column.aliases, header_key(_column.header), header_key(_column.english), _column.field):
        _ALIASES.setdefault(header_key(_alias.replace("_", " ")), _column.field)


def field_for(header: str) -> str | None:
    """The column a header names, or None for a column the import does not read."""
    key = header_key(header)
    if key in _ALIASES:
        return _ALIASES[key]
    # "Giá bán (VNĐ)" and "Khối lượng (g)" without brackets: "gia ban vnd", "khoi luong g".
    words = key.split()
    for cut in range(len(words) - 1, 0, -1):
        shorter = " ".join(words[:cut])
        if shorter in _ALIASES and len(shorter) >= 4:
            return _ALIASES[shorter]
    return None
