class HealthController < ApplicationController
  def show
    version = ActiveRecord::Base.connection.select_value("SELECT max(version) FROM schema_migrations")
    render plain: "up #{File.read(Rails.root.join("VERSION")).strip} schema=#{version}\n"
  end
end
