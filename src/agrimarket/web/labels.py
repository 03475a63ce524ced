"""What the pages call the catalogue's enumerations, in words a farmer uses (translated at render time)."""

from __future__ import annotations

from agrimarket.models import Category, OrderStatus, OrganizationKind, Unit
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

ORDER_STATUSES: dict[OrderStatus, str] = {
    OrderStatus.unpaid: N_("Not paid yet"),
    OrderStatus.paid: N_("Paid: to pack and ship"),
    OrderStatus.ready_to_ship: N_("Ready to ship"),
    OrderStatus.shipped: N_("Shipped"),
    OrderStatus.delivered: N_("Delivered"),
    OrderStatus.completed: N_("Completed"),
    OrderStatus.cancelled: N_("Cancelled"),
    OrderStatus.returned: N_("Returned"),
}

# A shop's chip on the product page: what the listing's state means for the farmer (the marketplace's own words,
# when it said something, follow below it).
CHIPS: dict[str, str] = {
    "live": N_("On sale"),
    "syncing": N_("Sending to the shop…"),
    "review": N_("Waiting for the marketplace's review"),
    "error": N_("Not sent: something went wrong"),
    "rejected": N_("Refused by the marketplace"),
    "paused": N_("Paused"),
    "unlisted": N_("Not on this shop"),
}
CHIP_HELP: dict[str, str] = {
    "live": N_("Buyers can order it. Stock and price follow your changes."),
    "syncing": N_("Your change is on its way. This takes a few seconds to a minute."),
    "review": N_("The marketplace checks new products first. This can take a day."),
    "error": N_("We will try again by ourselves. Tap Try again to send it now."),
    "rejected": N_("Change what the marketplace asks for below, then tap Try again."),
    "paused": N_("Buyers cannot order it on this shop. Tap Resume to sell it again."),
    "unlisted": N_("Tap Publish to sell this product on this shop."),
}

# Why a marketplace refused a ship, cancel or publish, in words a farmer uses (its own words follow in quotes).
CHANNEL_REFUSALS: dict[str, str] = {
    "unavailable": N_("%(shop)s did not answer. Try again in a minute."),
    "auth": N_("%(shop)s no longer accepts this shop's login. Ask your cooperative to connect the shop again."),
    "missing": N_("%(shop)s no longer has this order."),
    "refused": N_("%(shop)s refused."),
    "elsewhere": N_("Orders from %(shop)s are handled in its own seller centre."),
    "done": N_("This order is already shipped or cancelled."),
    "shipped": N_("This order has shipped: it can no longer be cancelled here."),
    "not_active": N_("This shop is paused or its login has expired: it cannot take new products now."),
    "listed": N_("This product is already on this shop."),
    "check": N_("%(shop)s cannot take this product yet."),
}
