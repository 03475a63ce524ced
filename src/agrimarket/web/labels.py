"""What the pages call the catalogue's enumerations, in words a farmer uses (translated at render time)."""

from __future__ import annotations

from agrimarket.models import Category, OrganizationKind, Unit
from agrimarket.web.i18n import N_

CATEGORIES: dict[Category, str] = {
    Category.fruit: N_("Fruit"),
    Category.nuts: N_("Nuts (cashew…)"),
    Category.spices: N_("Spices (pepper…)"),
    Category.coffee: N_("Coffee"),
    Category.tea: N_("Tea"),
    Category.honey: N_("Honey"),
    Category.vegetables: N_("Vegetables"),
    Category.rice: N_("Rice"),
    Category.dried: N_("Dried food"),
    Category.other: N_("Other"),
}

UNITS: dict[Unit, str] = {
    Unit.kg: N_("kg"),
    Unit.g: N_("gram"),
    Unit.hop: N_("box"),
    Unit.thung: N_("carton"),
    Unit.tui: N_("bag"),
    Unit.chai: N_("bottle"),
    Unit.hu: N_("jar"),
    Unit.qua: N_("piece of fruit"),
    Unit.bo: N_("bunch"),
    Unit.lit: N_("litre"),
    Unit.cai: N_("item"),
}

# The product's variant is named for its unit ("1 hộp") in Vietnamese whatever the page's language: it is what
# buyers on the marketplaces read.
UNIT_NAMES_VI: dict[Unit, str] = {
    Unit.kg: "kg",
    Unit.g: "gam",
    Unit.hop: "hộp",
    Unit.thung: "thùng",
    Unit.tui: "túi",
    Unit.chai: "chai",
    Unit.hu: "hũ",
    Unit.qua: "quả",
    Unit.bo: "bó",
    Unit.lit: "lít",
    Unit.cai: "cái",
}

# The shipping weight a new product's form starts from (1 kg); the farmer corrects it on the same screen.
DEFAULT_WEIGHT_GRAMS = 1000

ORGANIZATION_KINDS: dict[OrganizationKind, str] = {
    OrganizationKind.household: N_("Farmer household"),
    OrganizationKind.cooperative: N_("Cooperative"),
}
