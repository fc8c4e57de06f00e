-- A provider deployment's own settings: {"config": {...}, "allow": [origins], "secrets": [names]}.
-- Secret names only: values come from the host's environment. NULL = the role's settings.
ALTER TABLE deployments ADD COLUMN provider_settings TEXT;
