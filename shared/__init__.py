"""Infrastructure shared by the Quartier CRM services: no domain models, no payload schemas."""
