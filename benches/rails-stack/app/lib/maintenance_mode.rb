# The maintenance page while the flag is set in Rails.cache (Redis), for every
# path but /up, the health check.
class MaintenanceMode
  def initialize(app)
    @app = app
  end

  def call(env)
    if env["PATH_INFO"] != "/up" && Rails.cache.read("maintenance_mode:enabled") == "true"
      [503, { "Content-Type" => "text/html", "Retry-After" => "30" }, ["<h1>We'll be right back</h1>\n"]]
    else
      @app.call(env)
    end
  end
end
