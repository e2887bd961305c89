-- One database per service; the image creates quartier_contacts itself (POSTGRES_DB).
CREATE DATABASE quartier_visits OWNER quartier;
CREATE DATABASE quartier_newsletter OWNER quartier;
