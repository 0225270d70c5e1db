class MembersController < ApplicationController
  def index
    render plain: "#{Member.count} members\n"
  end
end
