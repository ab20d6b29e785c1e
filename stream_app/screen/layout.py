"""Where each of the 34 provincial units sits on the center's tile map: one tile per unit, laid out
roughly as the country lies (north at the top, the coast to the east), on a grid of rows and columns.

A tile map keeps every unit the same size, so Hà Nội is as easy to read as Gia Lai and a wall screen
needs no map data. ``tests/unit/test_screen.py`` checks it holds exactly the catalogue's current units,
one tile per cell.
"""

from __future__ import annotations

# code -> (row, column); columns 0 (west) to 5 (east)
TILES: dict[str, tuple[int, int]] = {
    "12": (0, 1),  # Lai Châu
    "15": (0, 2),  # Lào Cai
    "08": (0, 3),  # Tuyên Quang
    "04": (0, 4),  # Cao Bằng
    "11": (1, 0),  # Điện Biên
    "14": (1, 1),  # Sơn La
    "25": (1, 2),  # Phú Thọ
    "19": (1, 3),  # Thái Nguyên
    "20": (1, 4),  # Lạng Sơn
    "01": (2, 2),  # Hà Nội
    "24": (2, 3),  # Bắc Ninh
    "22": (2, 4),  # Quảng Ninh
    "37": (3, 2),  # Ninh Bình
    "33": (3, 3),  # Hưng Yên
    "31": (3, 4),  # Hải Phòng
    "38": (4, 2),  # Thanh Hóa
    "40": (5, 2),  # Nghệ An
    "42": (6, 3),  # Hà Tĩnh
    "44": (7, 3),  # Quảng Trị
    "46": (8, 4),  # Huế
    "48": (9, 4),  # Đà Nẵng
    "51": (10, 4),  # Quảng Ngãi
    "52": (11, 4),  # Gia Lai
    "66": (12, 4),  # Đắk Lắk
    "68": (13, 3),  # Lâm Đồng
    "56": (13, 4),  # Khánh Hòa
    "80": (14, 1),  # Tây Ninh
    "79": (14, 2),  # TP. Hồ Chí Minh
    "75": (14, 3),  # Đồng Nai
    "91": (15, 0),  # An Giang
    "82": (15, 1),  # Đồng Tháp
    "86": (15, 2),  # Vĩnh Long
    "92": (16, 1),  # Cần Thơ
    "96": (17, 1),  # Cà Mau
}
