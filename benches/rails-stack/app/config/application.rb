require_relative "boot"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
Bundler.require(*Rails.groups)
require_relative "../lib/maintenance_mode"

module Shop
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load = true
    config.cache_classes = true
    config.secret_key_base = ENV.fetch("SECRET_KEY_BASE", "x" * 64)
    # A namespace, as many apps have: the maintenance flag's Redis key is
    # then `shop:maintenance_mode:enabled`, which only the app knows.
    config.cache_store = :redis_cache_store, { url: ENV.fetch("REDIS_URL"), namespace: "shop" }
    config.logger = ActiveSupport::Logger.new($stdout)
    config.log_level = :warn
    config.hosts.clear
    config.middleware.insert_before 0, MaintenanceMode
  end
end
