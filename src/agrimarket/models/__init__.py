"""All ORM models, in one place, so Alembic's autogenerate sees every table."""

from agrimarket.models.accounts import (
    ApiToken,
    Membership,
    Organization,
    OrganizationKind,
    Role,
    User,
    UserSession,
)
from agrimarket.models.base import Base, utcnow
from agrimarket.models.catalog import (
    Category,
    Certification,
    CertificationKind,
    Product,
    ProductStatus,
    Unit,
    Variant,
)
from agrimarket.models.channels import (
    ChannelConnection,
    ConnectionStatus,
    Listing,
    ListingStatus,
    UsedConnectState,
)
from agrimarket.models.imports import ImportJob, ImportRowError, ImportStatus
from agrimarket.models.inventory import MovementKind, StockLevel, StockMovement
from agrimarket.models.media import MediaAsset, Rendition
from agrimarket.models.orders import Order, OrderLine, OrderStatus
from agrimarket.models.payments import CheckoutState, HoldState, StorefrontCheckout, StorefrontCheckoutLine
from agrimarket.models.work import InboundEvent, Job, JobStatus

__all__ = [
    "ApiToken",
    "Base",
    "Category",
    "Certification",
    "CertificationKind",
    "ChannelConnection",
    "CheckoutState",
    "ConnectionStatus",
    "HoldState",
    "ImportJob",
    "ImportRowError",
    "ImportStatus",
    "InboundEvent",
    "Job",
    "JobStatus",
    "Listing",
    "ListingStatus",
    "MediaAsset",
    "Membership",
    "MovementKind",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Organization",
    "OrganizationKind",
    "Product",
    "ProductStatus",
    "Rendition",
    "Role",
    "StockLevel",
    "StockMovement",
    "StorefrontCheckout",
    "StorefrontCheckoutLine",
    "Unit",
    "UsedConnectState",
    "User",
    "UserSession",
    "Variant",
    "utcnow",
]
